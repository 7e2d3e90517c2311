package schedule

import "testing"

// FuzzScheduler drives the scheduler with the steps that the input spells,
// checked as in the randomized test (see model), then drains it: every
// message read must finish. go test -fuzz FuzzScheduler ./schedule
func FuzzScheduler(f *testing.F) {
	f.Add([]byte{4, 2, 9, 0, 0, 8, 16, 0, 3, 2, 4, 0, 5, 3, 4})
	f.Add([]byte{0, 3, 5, 7, 32, 64, 96, 2, 1, 0, 3, 4, 3})
	f.Add([]byte{11, 0, 19, 1, 0, 8, 0, 8, 1, 0, 2, 3, 3, 13, 5, 6, 4, 4})
	keys := []string{"", "a", "b", "c"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 || len(data) > 4000 {
			return
		}
		p := Policy{Ordering: Ordering(data[0] % 3), Concurrency: 1, MaxMessages: 1 + int(data[1]%6), MaxBytes: 1 + int(data[2]%20)}
		if p.Ordering != OrderPartition {
			p.Concurrency = 1 + int(data[0]/3%4)
		}
		if data[3]&1 != 0 {
			p.Window = 1 + int(data[3]>>1%16)
		}
		m := newModel(t, p)
		m.seed = "fuzz:"
		for _, b := range data[4:] {
			arg := int(b >> 3)
			switch b % 8 {
			case 0:
				m.add(keys[arg%4], 1+arg/4, 0, false)
			case 1:
				m.add("", 0, int64(arg%3), true)
			case 2:
				m.next(false)
			case 3:
				m.next(true)
			case 4:
				if ids := m.openIDs(); len(ids) > 0 {
					m.done(ids[arg%len(ids)])
				}
			case 5:
				if ids := m.openIDs(); len(ids) > 0 {
					id := ids[arg%len(ids)]
					idx := m.open[id]
					m.partial(id, m.msgs[idx[arg%len(idx)]].offset)
				}
			case 6:
				m.setLimit(arg % (p.Concurrency + 1))
			case 7:
				if arg == 31 {
					m.stop()
				}
			}
		}
		m.setLimit(p.Concurrency)
		for {
			for m.next(true) {
			}
			ids := m.openIDs()
			if len(ids) == 0 {
				break
			}
			for _, id := range ids {
				m.done(id)
			}
		}
		if !m.stopped {
			m.checkDrained()
		}
	})
}
