package e2e

import (
	"fmt"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kgo"
)

// workload makes n messages of about 100 bytes spread round-robin over
// the partitions of topic. Most are text with a text key; some have no key,
// a key or value that is not UTF-8, an empty value or no value at all, so
// that every scenario also proves that payloads survive byte for byte.
func workload(topic string, partitions int32, n int, seed uint64) []*kgo.Record {
	rng := rand.New(rand.NewPCG(seed, uint64(len(topic))))
	out := make([]*kgo.Record, 0, n)
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: int32(i) % partitions}
		switch {
		case i%7 == 3:
			r.Key = nil
		case i%11 == 5:
			r.Key = randomBytes(rng, 1+rng.IntN(16))
		default:
			r.Key = fmt.Appendf(nil, "key-%d", i)
		}
		switch {
		case i%97 == 13:
			r.Value = []byte{}
		case i%101 == 17:
			r.Value = nil
		case i%13 == 6:
			r.Value = randomBytes(rng, 100)
		default:
			v := fmt.Appendf(nil, "%s #%d \"quoted\" \\ ünïcode ✓ ", topic, i)
			for len(v) < 100 {
				v = append(v, byte('a'+len(v)%26))
			}
			r.Value = v
		}
		out = append(out, r)
	}
	return out
}

// randomBytes returns n random bytes that are sure not to be UTF-8.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[0] = 0xff // never the start of a UTF-8 sequence
	return b
}
