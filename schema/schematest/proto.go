package schematest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The Protobuf files of a shop, as a producer registers them: common.proto
// under a subject of its own, referenced by shop.proto, which imports it
// and a well-known type, nests a message and an enum, and holds more than
// one top-level message, so that its values carry message indexes.
const (
	CommonProto = `syntax = "proto3";
package common;

message Money {
  string currency = 1;
  int64 units = 2;
}
`
	ShopProto = `syntax = "proto3";
package shop;

import "common.proto";
import "google/protobuf/timestamp.proto";

message Ping {
  string id = 1;
}

message Order {
  message Line {
    string sku = 1;
    int32 qty = 2;
    common.Money price = 3;
  }
  enum Status {
    NEW = 0;
    PAID = 1;
  }
  string id = 1;
  repeated Line lines = 2;
  Status status = 3;
  google.protobuf.Timestamp at = 4;
  bytes note = 5;
  uint64 big = 6;
  double amount = 7;
}
`
)

// Shop returns the descriptors of CommonProto and ShopProto, built by hand
// from the same declarations: messages made from them are encoded without
// the .proto compiler the connector uses.
func Shop(t testing.TB) (common, shop protoreflect.FileDescriptor) {
	t.Helper()
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string, repeated bool) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(jsonName(name)),
			Number:   proto.Int32(n),
			Type:     typ.Enum(),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		}
		if repeated {
			f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		str   = descriptorpb.FieldDescriptorProto_TYPE_STRING
		i64   = descriptorpb.FieldDescriptorProto_TYPE_INT64
		i32   = descriptorpb.FieldDescriptorProto_TYPE_INT32
		u64   = descriptorpb.FieldDescriptorProto_TYPE_UINT64
		msg   = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		enum  = descriptorpb.FieldDescriptorProto_TYPE_ENUM
		byts  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		float = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
	)
	commonProto := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("common.proto"),
		Package: proto.String("common"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:  proto.String("Money"),
			Field: []*descriptorpb.FieldDescriptorProto{field("currency", 1, str, "", false), field("units", 2, i64, "", false)},
		}},
	}
	shopProto := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("shop.proto"),
		Package:    proto.String("shop"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"common.proto", "google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Ping"), Field: []*descriptorpb.FieldDescriptorProto{field("id", 1, str, "", false)}},
			{
				Name: proto.String("Order"),
				NestedType: []*descriptorpb.DescriptorProto{{
					Name: proto.String("Line"),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("sku", 1, str, "", false), field("qty", 2, i32, "", false), field("price", 3, msg, ".common.Money", false),
					},
				}},
				EnumType: []*descriptorpb.EnumDescriptorProto{{
					Name: proto.String("Status"),
					Value: []*descriptorpb.EnumValueDescriptorProto{
						{Name: proto.String("NEW"), Number: proto.Int32(0)}, {Name: proto.String("PAID"), Number: proto.Int32(1)},
					},
				}},
				Field: []*descriptorpb.FieldDescriptorProto{
					field("id", 1, str, "", false), field("lines", 2, msg, ".shop.Order.Line", true),
					field("status", 3, enum, ".shop.Order.Status", false), field("at", 4, msg, ".google.protobuf.Timestamp", false),
					field("note", 5, byts, "", false), field("big", 6, u64, "", false), field("amount", 7, float, "", false),
				},
			},
		},
	}
	files := new(protoregistry.Files)
	if err := files.RegisterFile(timestamppb.File_google_protobuf_timestamp_proto); err != nil {
		t.Fatal(err)
	}
	var err error
	if common, err = protodesc.NewFile(commonProto, files); err != nil {
		t.Fatalf("common.proto: %v", err)
	}
	if err := files.RegisterFile(common); err != nil {
		t.Fatal(err)
	}
	if shop, err = protodesc.NewFile(shopProto, files); err != nil {
		t.Fatalf("shop.proto: %v", err)
	}
	return common, shop
}

// jsonName is protoc's JSON name of a field: lowerCamelCase.
func jsonName(name string) string {
	out := make([]byte, 0, len(name))
	upper := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			upper = true
		case upper && c >= 'a' && c <= 'z':
			out = append(out, c-'a'+'A')
			upper = false
		default:
			out = append(out, c)
			upper = false
		}
	}
	return string(out)
}

// Message returns an empty message of the named type of file, such as
// "Order" or "Order.Line", to fill through protoreflect.
func Message(t testing.TB, file protoreflect.FileDescriptor, name string) *dynamicpb.Message {
	t.Helper()
	full := protoreflect.FullName(string(file.Package()) + "." + name)
	var find func(ms protoreflect.MessageDescriptors) protoreflect.MessageDescriptor
	find = func(ms protoreflect.MessageDescriptors) protoreflect.MessageDescriptor {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.FullName() == full {
				return m
			}
			if n := find(m.Messages()); n != nil {
				return n
			}
		}
		return nil
	}
	md := find(file.Messages())
	if md == nil {
		t.Fatalf("no message %s in %s", full, file.Path())
	}
	return dynamicpb.NewMessage(md)
}

// Set sets the fields of m by name: scalars, enums by number
// (protoreflect.EnumNumber), messages and lists of either.
func Set(m *dynamicpb.Message, fields map[string]any) *dynamicpb.Message {
	for name, v := range fields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			panic("no field " + name)
		}
		switch v := v.(type) {
		case []*dynamicpb.Message:
			list := m.Mutable(fd).List()
			for _, e := range v {
				list.Append(protoreflect.ValueOfMessage(e))
			}
		case proto.Message:
			m.Set(fd, protoreflect.ValueOfMessage(v.ProtoReflect()))
		default:
			m.Set(fd, protoreflect.ValueOf(v))
		}
	}
	return m
}
