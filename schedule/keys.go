package schedule

import "hash/maphash"

// keyState is what the scheduler knows of one key under OrderKey. A key is
// known while it has messages queued or in flight, so the table never holds
// more keys than the window holds messages.
type keyState struct {
	hash uint64
	// The queued messages of the key, linked by entry.next in offset order.
	head, tail    uint64
	queued, bytes int
	// open counts the key's messages in flight: all in one batch. The key
	// is eligible (in the heap) when open is 0 and queued is not.
	open    int
	heapIdx int // -1 when not in the heap
}

// keyTable indexes the keys by a hash of their bytes. Two keys whose hashes
// collide are ordered as one: slower, never out of order.
type keyTable struct {
	seed  maphash.Seed
	index map[uint64]int32
	slab  []keyState
	free  []int32
	// heap holds the eligible keys, the one with the lowest queued offset
	// first: the merge that builds a batch in offset order. Each node
	// carries its key's head, so that sifting reads only the heap.
	heap []heapNode
}

type heapNode struct {
	head uint64
	key  int32
}

// unkeyed is the hash shared by every message without a key.
const unkeyed = 0

func (t *keyTable) init() {
	t.seed = maphash.MakeSeed()
	t.index = make(map[uint64]int32)
}

// get returns the key's index in slab, adding the key if it is new.
func (t *keyTable) get(key []byte) int32 {
	h := uint64(unkeyed)
	if len(key) > 0 {
		h = maphash.Bytes(t.seed, key)
	}
	if ki, ok := t.index[h]; ok {
		return ki
	}
	var ki int32
	if n := len(t.free); n > 0 {
		ki = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		ki = int32(len(t.slab))
		t.slab = append(t.slab, keyState{})
	}
	t.slab[ki] = keyState{hash: h, head: noSeq, tail: noSeq, heapIdx: -1}
	t.index[h] = ki
	return ki
}

// release forgets a key that has nothing queued or in flight.
func (t *keyTable) release(ki int32) {
	delete(t.index, t.slab[ki].hash)
	t.free = append(t.free, ki)
}

func (t *keyTable) less(i, j int) bool { return t.heap[i].head < t.heap[j].head }

func (t *keyTable) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.slab[t.heap[i].key].heapIdx = i
	t.slab[t.heap[j].key].heapIdx = j
}

// push makes key ki eligible.
func (t *keyTable) push(ki int32) {
	t.slab[ki].heapIdx = len(t.heap)
	t.heap = append(t.heap, heapNode{head: t.slab[ki].head, key: ki})
	t.up(len(t.heap) - 1)
}

// advance follows the head of the first key, which moved on to its next
// queued message.
func (t *keyTable) advance() {
	t.heap[0].head = t.slab[t.heap[0].key].head
	t.down(0)
}

func (t *keyTable) remove(i int) {
	last := len(t.heap) - 1
	t.slab[t.heap[i].key].heapIdx = -1
	if i != last {
		t.heap[i] = t.heap[last]
		t.slab[t.heap[i].key].heapIdx = i
	}
	t.heap = t.heap[:last]
	if i != last {
		t.down(i)
		t.up(i)
	}
}

func (t *keyTable) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !t.less(i, parent) {
			return
		}
		t.swap(i, parent)
		i = parent
	}
}

func (t *keyTable) down(i int) {
	n := len(t.heap)
	for {
		least := i
		if l := 2*i + 1; l < n && t.less(l, least) {
			least = l
		}
		if r := 2*i + 2; r < n && t.less(r, least) {
			least = r
		}
		if least == i {
			return
		}
		t.swap(i, least)
		i = least
	}
}
