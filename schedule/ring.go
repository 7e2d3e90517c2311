package schedule

// ring holds the window's messages in offset order, each named by its
// sequence number: how many messages came before it. Its buffer doubles as
// needed, so it costs what the window holds at its fullest, never more than
// the policy's Window.
type ring[P any] struct {
	buf   []entry[P] // len is a power of two
	start int        // index in buf of the message head
	head  uint64     // sequence number of the oldest message held
	n     int
}

// end is the sequence number of the next message pushed.
func (r *ring[P]) end() uint64 { return r.head + uint64(r.n) }

// at returns the message seq, which must be held.
func (r *ring[P]) at(seq uint64) *entry[P] {
	return &r.buf[(r.start+int(seq-r.head))&(len(r.buf)-1)]
}

func (r *ring[P]) push(e entry[P]) uint64 {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.start+r.n)&(len(r.buf)-1)] = e
	r.n++
	return r.end() - 1
}

func (r *ring[P]) pop() {
	r.buf[r.start] = entry[P]{}
	r.start = (r.start + 1) & (len(r.buf) - 1)
	r.head++
	r.n--
}

func (r *ring[P]) grow() {
	buf := make([]entry[P], max(16, 2*len(r.buf)))
	for i := range r.n {
		buf[i] = r.buf[(r.start+i)&(len(r.buf)-1)]
	}
	r.buf, r.start = buf, 0
}
