package memo

import (
	"sync"
	"testing"
)

func TestMap(t *testing.T) {
	m := &Map[int, *int]{Max: 4}
	val := func(i int) *int { return &i }
	odd := func(v *int) bool { return *v%2 == 1 }
	for i := range 4 {
		m.Store(i, val(i), odd)
	}
	if v, ok := m.Load(2); !ok || *v != 2 || m.Len() != 4 {
		t.Fatalf("Load(2) = %v, %v; Len %d", v, ok, m.Len())
	}
	m.Store(2, val(20), odd) // a replacement: no eviction
	if v, _ := m.Load(2); *v != 20 || m.Len() != 4 {
		t.Fatalf("after replacing 2: %d, Len %d", *v, m.Len())
	}
	m.Store(4, val(4), odd) // full: the odd ones go
	if _, ok := m.Load(1); ok || m.Len() != 3 {
		t.Fatalf("after the bound: 1 still there or Len %d, want 3 (0, 2, 4)", m.Len())
	}
	m.Store(6, val(6), odd)
	m.Store(8, val(8), odd) // full of even ones: all go
	if m.Len() != 1 {
		t.Fatalf("Len %d after a full map with nothing stale, want 1", m.Len())
	}
	v8, _ := m.Load(8)
	m.CompareAndDelete(8, val(8)) // another pointer: kept
	if m.Len() != 1 {
		t.Fatal("CompareAndDelete removed a different value")
	}
	m.CompareAndDelete(8, v8)
	m.Store(1, val(1), nil)
	m.Delete(1)
	m.Delete(1)
	if m.Len() != 0 {
		t.Fatalf("Len %d after deleting everything", m.Len())
	}
	m.Store(3, val(3), nil)
	m.DeleteIf(odd)
	m.Store(5, val(5), nil)
	m.Clear()
	if _, ok := m.Load(5); ok || m.Len() != 0 {
		t.Fatal("Clear left entries")
	}
}

func TestMapConcurrent(t *testing.T) {
	m := &Map[int, *int]{Max: 100}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				k := g*1000 + i
				m.Store(k, &k, func(*int) bool { return false })
				m.Load(k - 1)
				if i%3 == 0 {
					m.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
	if n := m.Len(); n > 100 || n < 0 {
		t.Fatalf("Len %d, outside 0..100", n)
	}
}

func TestMapUpdate(t *testing.T) {
	m := &Map[string, int]{Max: 2}
	keepBigger := func(v int) func(int, bool) (int, bool) {
		return func(old int, ok bool) (int, bool) { return v, !ok || v > old }
	}
	m.Update("a", keepBigger(5), nil)
	m.Update("a", keepBigger(3), nil) // refused: smaller
	if v, _ := m.Load("a"); v != 5 {
		t.Fatalf("a = %d, want 5 (the update returning false changes nothing)", v)
	}
	m.Update("a", keepBigger(7), nil)
	m.Update("b", keepBigger(1), nil)
	if v, _ := m.Load("a"); v != 7 || m.Len() != 2 {
		t.Fatalf("a = %d, Len %d; want 7, 2", v, m.Len())
	}
	m.UpdateAll(func(v int) int { return v * 10 })
	if a, _ := m.Load("a"); a != 70 || m.Len() != 2 {
		t.Fatalf("after UpdateAll: a = %d, Len %d", a, m.Len())
	}
	m.Update("c", keepBigger(1), func(v int) bool { return v < 50 }) // full: b (10) is stale
	if _, ok := m.Load("b"); ok || m.Len() != 2 {
		t.Fatalf("b kept or Len %d after a new key filled the map", m.Len())
	}
}
