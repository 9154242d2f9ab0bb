package service

import (
	"os"
	"sync"
)

// fdStore holds the descriptors systemd passed at start ($LISTEN_FDS) that
// no bridge has adopted yet, by FDNAME. Bridges take theirs when they
// start, from the Run goroutine or a supervisor goroutine, so the map is
// guarded by mu; its methods may be called from any goroutine.
type fdStore struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// newFDStore returns a store holding files (which may be nil); it owns
// them from then on.
func newFDStore(files map[string]*os.File) *fdStore {
	s := &fdStore{files: map[string]*os.File{}}
	for name, f := range files {
		s.files[name] = f
	}
	return s
}

// take removes the descriptor named name from the store and returns it
// (nil if there is none): it is the caller's now.
func (s *fdStore) take(name string) *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[name]
	delete(s.files, name)
	return f
}

// put gives back a descriptor that an attempt could not adopt, for the
// next attempt.
func (s *fdStore) put(name string, f *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = f
}

// takeUnclaimed removes and returns the descriptors whose name claimed
// does not know.
func (s *fdStore) takeUnclaimed(claimed func(name string) bool) map[string]*os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*os.File{}
	for name, f := range s.files {
		if !claimed(name) {
			out[name] = f
			delete(s.files, name)
		}
	}
	return out
}

// closeAll closes the descriptors left in the store (at the end of Run).
func (s *fdStore) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, f := range s.files {
		f.Close()
		delete(s.files, name)
	}
}
