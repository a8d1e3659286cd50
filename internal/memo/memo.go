// Package memo holds Map, the map behind the caches that the token read
// path consults on every request (the refresher's tokens, API keys,
// verified access tokens and their callers, service clients).
package memo

import "sync"

// Map is a map from K to V for caches read far more often than written:
// reads take no lock (a sync.Map), and writers serialise on a mutex, so
// that the map holds at most Max entries. Its zero value is an empty map
// without a bound. V must be comparable for CompareAndDelete (the caches
// hold pointers).
type Map[K comparable, V any] struct {
	// Max bounds the entries; 0: no bound. Set it before the first Store.
	Max int
	m   sync.Map
	mu  sync.Mutex
	n   int // entries; guarded by mu
}

// Load returns the value of k and whether there is one.
func (m *Map[K, V]) Load(k K) (V, bool) {
	v, ok := m.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

// Store sets k to v. When the map is full and k is new, the entries stale
// reports true of are removed first, and if that frees nothing, all of them: a flood of
// distinct keys starts the cache over rather than grow it.
func (m *Map[K, V]) Store(k K, v V, stale func(V) bool) {
	m.Update(k, func(V, bool) (V, bool) { return v, true }, stale)
}

// Update sets k to what f returns, given k's value (ok: it has one), in
// one step with the other writers (a check and its store); when f returns
// false, k stays as it is. Bounded as Store is.
func (m *Map[K, V]) Update(k K, f func(old V, ok bool) (V, bool), stale func(V) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.Load(k)
	v, set := f(old, ok)
	if !set {
		return
	}
	if !ok && m.Max > 0 && m.n >= m.Max {
		m.deleteLocked(stale)
		if m.n >= m.Max {
			m.m.Clear()
			m.n = 0
		}
	}
	if _, loaded := m.m.Swap(k, v); !loaded {
		m.n++
	}
}

// UpdateAll replaces each value with what f returns for it.
func (m *Map[K, V]) UpdateAll(f func(V) V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m.Range(func(k, v any) bool {
		m.m.Store(k, f(v.(V)))
		return true
	})
}

// Delete removes k.
func (m *Map[K, V]) Delete(k K) {
	m.mu.Lock()
	if _, loaded := m.m.LoadAndDelete(k); loaded {
		m.n--
	}
	m.mu.Unlock()
}

// CompareAndDelete removes k if its value is v.
func (m *Map[K, V]) CompareAndDelete(k K, v V) {
	m.mu.Lock()
	if m.m.CompareAndDelete(k, v) {
		m.n--
	}
	m.mu.Unlock()
}

// DeleteIf removes the entries stale reports true of.
func (m *Map[K, V]) DeleteIf(stale func(V) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteLocked(stale)
}

func (m *Map[K, V]) deleteLocked(stale func(V) bool) {
	if stale == nil {
		return
	}
	m.m.Range(func(k, v any) bool {
		if stale(v.(V)) {
			m.m.Delete(k)
			m.n--
		}
		return true
	})
}

// Clear removes every entry.
func (m *Map[K, V]) Clear() {
	m.mu.Lock()
	m.m.Clear()
	m.n = 0
	m.mu.Unlock()
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}
