package postgres

import (
	"testing"
)

// TestRespQueueOrder pushes and pops in every interleaving a session produces (one query at a
// time, pipelined batches, a queue drained and filled again) and checks that items come out in
// the order they went in, that popped slots do not keep what they held, and that an emptied
// queue keeps a small array and lets a large one go.
func TestRespQueueOrder(t *testing.T) {
	var q respQueue
	next, want := uint64(1), uint64(1)
	push := func(n int) {
		for range n {
			q.add(item{kind: itemExecute, ref: next, refs: []uint64{next}})
			next++
		}
	}
	pop := func(n int) {
		for range n {
			if len(q.items) == 0 {
				t.Fatalf("queue empty, want item %d", want)
			}
			if got := q.items[0].ref; got != want {
				t.Fatalf("head is item %d, want %d", got, want)
			}
			want++
			q.pop()
		}
	}
	checkStale := func() {
		t.Helper()
		// Every slot of the array outside the queue's window is zero.
		start := len(q.store) - cap(q.items)
		for i := range q.store {
			if (i < start || i >= start+len(q.items)) && q.store[i].ref != 0 {
				t.Fatalf("slot %d outside the queue still holds item %d", i, q.store[i].ref)
			}
		}
	}

	// One query at a time: after the first, no array is made again.
	push(1)
	pop(1)
	store := &q.store[:1][0]
	for range 100 {
		push(1)
		pop(1)
	}
	if &q.store[:1][0] != store {
		t.Error("a queue emptied and filled again made a new array")
	}

	// A pipelined batch, drained from the front while more arrive: the queue moves to the front
	// of its array instead of growing it.
	push(5)
	for range 50 {
		pop(3)
		push(3)
		checkStale()
	}
	if cap(q.store) > maxKeptItems {
		t.Errorf("queue of at most 5 items grew its array to %d", cap(q.store))
	}
	pop(5)
	if cap(q.store) == 0 {
		t.Error("an emptied queue let go of a small array")
	}

	// A long batch: its array is let go once the queue is empty.
	push(3 * maxKeptItems)
	pop(2 * maxKeptItems)
	checkStale()
	push(maxKeptItems)
	pop(2 * maxKeptItems)
	if len(q.items) != 0 || cap(q.store) != 0 {
		t.Errorf("after a long batch the empty queue keeps %d items' array", cap(q.store))
	}
	push(2)
	pop(2)
}
