package schema

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// protoDecoder decodes the messages of one .proto file, as the registry
// hands it out, by protojson's canonical mapping (field names in
// lowerCamelCase, 64-bit integers and bytes as strings, enums by name,
// well-known types in their special forms), with the fields that hold their
// default value written too, so that a function finds every field of its
// message (EmitUnpopulated; an unset oneof stays absent).
type protoDecoder struct {
	file  protoreflect.FileDescriptor
	types *protoregistry.Types // every message and extension the file can see, for Any and extensions
	json  protojson.MarshalOptions
}

// mainProto is the name under which the schema itself is compiled: the
// names of its references are those its imports use, and no import names
// this one.
const mainProto = "schema-registry/main.proto"

// compileProto compiles a .proto file whose imports are the references,
// keyed by the name they are imported by. The well-known types
// (google/protobuf/*.proto) need no reference.
func compileProto(ctx context.Context, text string, refs map[string]string) (*protoDecoder, error) {
	sources := make(map[string]string, len(refs)+1)
	for name, src := range refs {
		sources[name] = src
	}
	sources[mainProto] = text
	var problems []string
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: func(path string) (io.ReadCloser, error) {
				if src, ok := sources[path]; ok {
					return io.NopCloser(strings.NewReader(src)), nil
				}
				return nil, fmt.Errorf("%s is imported but is not among the schema's references", path)
			},
		}),
		MaxParallelism: 1,
		Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
			problems = append(problems, err.Error())
			return nil // report them all
		}, nil),
	}
	files, err := c.Compile(ctx, mainProto)
	if err != nil {
		if len(problems) > 0 {
			return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil, err
	}
	file := files[0]
	types := new(protoregistry.Types)
	registerTypes(types, file, make(map[string]bool))
	return &protoDecoder{
		file:  file,
		types: types,
		json:  protojson.MarshalOptions{EmitUnpopulated: true, Resolver: types},
	}, nil
}

// registerTypes registers the messages, enums and extensions of f and of
// every file it imports, once each.
func registerTypes(types *protoregistry.Types, f protoreflect.FileDescriptor, seen map[string]bool) {
	if seen[f.Path()] {
		return
	}
	seen[f.Path()] = true
	imports := f.Imports()
	for i := range imports.Len() {
		registerTypes(types, imports.Get(i).FileDescriptor, seen)
	}
	var messages func(ms protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			_ = types.RegisterMessage(dynamicpb.NewMessageType(m))
			registerExtensions(types, m.Extensions())
			messages(m.Messages())
		}
	}
	messages(f.Messages())
	registerExtensions(types, f.Extensions())
}

func registerExtensions(types *protoregistry.Types, xs protoreflect.ExtensionDescriptors) {
	for i := range xs.Len() {
		_ = types.RegisterExtension(dynamicpb.NewExtensionType(xs.Get(i)))
	}
}

// message finds the message that a value's indexes name: the first index
// among the file's top-level messages, each next one among the nested
// messages of the one before.
func (d *protoDecoder) message(indexes []int) (protoreflect.MessageDescriptor, error) {
	ms := d.file.Messages()
	var m protoreflect.MessageDescriptor
	for depth, i := range indexes {
		if i >= ms.Len() {
			return nil, fmt.Errorf("message index %v: no message %d at depth %d, which has %d", indexes, i, depth, ms.Len())
		}
		m = ms.Get(i)
		ms = m.Messages()
	}
	if m == nil {
		return nil, fmt.Errorf("message index %v names no message", indexes)
	}
	return m, nil
}

// appendJSON appends the JSON of the message that payload holds, after its
// message indexes.
func (d *protoDecoder) appendJSON(dst, payload []byte) ([]byte, error) {
	var buf [4]int
	indexes, payload, err := messageIndexes(buf[:0], payload)
	if err != nil {
		return dst, fmt.Errorf("message indexes: %w", err)
	}
	md, err := d.message(indexes)
	if err != nil {
		return dst, err
	}
	m := dynamicpb.NewMessage(md)
	if err := (proto.UnmarshalOptions{Resolver: d.types}).Unmarshal(payload, m); err != nil {
		return dst, fmt.Errorf("%s: %w", md.FullName(), err)
	}
	out, err := d.json.MarshalAppend(dst, m)
	if err != nil {
		return dst, fmt.Errorf("%s to JSON: %w", md.FullName(), err)
	}
	return out, nil
}
