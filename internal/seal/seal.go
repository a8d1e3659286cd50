// Package seal implements the envelope encryption that keeps tokenkeeper's
// secrets sealed at rest.
//
// A 32-byte master key, held outside the database (the TOKENKEEPER_MASTER_KEY
// environment variable or a key file), wraps random 32-byte data keys. The
// wrapped data keys live in the database; a Ring holds the unwrapped ones in
// memory. Secrets are sealed with AES-256-GCM under the newest (active) data
// key, and each ciphertext carries the id of the key that sealed it, so that
// keys can be rotated while rows sealed under older keys keep opening.
//
// Every sealed value is bound to where it is stored by its associated data
// (see AD): a ciphertext copied to another row or another column fails to
// open.
//
// Ciphertext format (version 1):
//
//	byte 0      version (1)
//	bytes 1-4   data key id, big endian
//	bytes 5-16  GCM nonce (random)
//	bytes 17-   AES-256-GCM ciphertext and 16-byte tag
//
// The header (bytes 0-4) is authenticated along with the associated data.
//
// Errors returned by this package never contain key material, plaintext or
// ciphertext.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// KeySize is the size in bytes of master keys and data keys (AES-256).
const KeySize = 32

const (
	version1   byte = 1
	headerSize      = 1 + 4
	nonceSize       = 12
	tagSize         = 16
	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = headerSize + nonceSize + tagSize
)

// adPrefix starts every associated data string; it names the format version
// so that a future format can never open a version 1 ciphertext by accident.
const adPrefix = "tokenkeeper/v1|"

var (
	// ErrMalformed reports a ciphertext that is not in the sealed format.
	ErrMalformed = errors.New("sealed value is malformed")
	// ErrUnknownKey reports a ciphertext sealed with a data key the ring does
	// not hold. Test with errors.Is; errors.As with *UnknownKeyError gives the id.
	ErrUnknownKey = errors.New("sealed value uses an unknown data key")
	// ErrOpen reports a ciphertext that fails authentication: it was moved to
	// another row or field, tampered with, or sealed under another key.
	ErrOpen = errors.New("sealed value does not open: it was moved to another row or field, tampered with, or sealed with another key")
	// ErrNoActiveKey reports a Seal on an empty ring.
	ErrNoActiveKey = errors.New("key ring has no data key")
	// ErrMasterKeyMismatch reports a master key that cannot unwrap the data
	// keys stored in a database.
	ErrMasterKeyMismatch = errors.New("master key does not match this database")
)

// UnknownKeyError is returned by Ring.Open for a ciphertext sealed under a
// data key the ring does not hold. It matches ErrUnknownKey with errors.Is.
type UnknownKeyError struct {
	ID uint32 // the data key id named by the ciphertext
}

// Error implements the error interface.
func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sealed value uses unknown data key %d", e.ID)
}

// Is reports whether target is ErrUnknownKey.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// AD returns the associated data that binds a sealed value to a table, a row
// and a field: "tokenkeeper/v1|" + table + "|" + rowID + "|" + field.
func AD(table, rowID, field string) []byte {
	b := make([]byte, 0, len(adPrefix)+len(table)+len(rowID)+len(field)+2)
	b = append(b, adPrefix...)
	b = append(b, table...)
	b = append(b, '|')
	b = append(b, rowID...)
	b = append(b, '|')
	b = append(b, field...)
	return b
}

// NewDataKey returns a new random data key of KeySize bytes.
func NewDataKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create gcm: %w", err)
	}
	return gcm, nil
}

// Ring holds unwrapped data keys by id. The key with the highest id is the
// active one: Seal uses it, Open uses whichever key a ciphertext names.
//
// A Ring is safe for concurrent use.
type Ring struct {
	mu     sync.RWMutex
	keys   map[uint32]cipher.AEAD // guarded by mu; data key id -> AES-GCM
	raw    map[uint32][]byte      // guarded by mu; data key id -> key bytes, for Clone
	active uint32                 // guarded by mu; highest id in keys, 0 if empty
}

// NewRing returns an empty ring.
func NewRing() *Ring {
	return &Ring{keys: make(map[uint32]cipher.AEAD), raw: make(map[uint32][]byte)}
}

// Add puts a data key in the ring. id must not be 0. If id is higher than
// every id already held, the key becomes the active one. Adding an id that is
// already held with the same key is a no-op; with a different key, an error.
func (r *Ring) Add(id uint32, key []byte) error {
	if id == 0 {
		return errors.New("add data key: id 0 is reserved")
	}
	gcm, err := newGCM(key)
	if err != nil {
		return fmt.Errorf("add data key %d: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.raw[id]; ok {
		if string(old) == string(key) {
			return nil
		}
		return fmt.Errorf("add data key %d: a different key with this id is already in the ring", id)
	}
	r.keys[id] = gcm
	r.raw[id] = append([]byte(nil), key...)
	if id > r.active {
		r.active = id
	}
	return nil
}

// Has reports whether the ring holds the data key id.
func (r *Ring) Has(id uint32) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.keys[id]
	return ok
}

// Active returns the id of the active data key, ok=false if the ring is empty.
func (r *Ring) Active() (id uint32, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.active, r.active != 0
}

// Len returns the number of data keys in the ring.
func (r *Ring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keys)
}

// Clone returns an independent copy of the ring.
func (r *Ring) Clone() *Ring {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := NewRing()
	for id, gcm := range r.keys {
		c.keys[id] = gcm // cipher.AEAD from crypto/cipher is safe for concurrent use
		c.raw[id] = r.raw[id]
	}
	c.active = r.active
	return c
}

// Seal encrypts plaintext under the active data key, binding it to ad
// (see AD). The result is a new slice in the format described in the package
// documentation.
func (r *Ring) Seal(plaintext, ad []byte) ([]byte, error) {
	r.mu.RLock()
	id := r.active
	gcm := r.keys[id]
	r.mu.RUnlock()
	if gcm == nil {
		return nil, ErrNoActiveKey
	}
	return sealWith(gcm, id, plaintext, ad)
}

func sealWith(gcm cipher.AEAD, id uint32, plaintext, ad []byte) ([]byte, error) {
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+tagSize)
	out[0] = version1
	binary.BigEndian.PutUint32(out[1:headerSize], id)
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("seal: generate nonce: %w", err)
	}
	return gcm.Seal(out, out[headerSize:], plaintext, fullAD(out[:headerSize], ad)), nil
}

// fullAD authenticates the ciphertext header together with the caller's
// associated data.
func fullAD(header, ad []byte) []byte {
	b := make([]byte, 0, len(header)+len(ad))
	b = append(b, header...)
	return append(b, ad...)
}

// KeyID returns the data key id named by a sealed value.
func KeyID(ciphertext []byte) (uint32, error) {
	if len(ciphertext) < headerSize+nonceSize+tagSize {
		return 0, ErrMalformed
	}
	if ciphertext[0] != version1 {
		return 0, fmt.Errorf("%w: unknown version %d", ErrMalformed, ciphertext[0])
	}
	id := binary.BigEndian.Uint32(ciphertext[1:headerSize])
	if id == 0 {
		return 0, fmt.Errorf("%w: data key id 0", ErrMalformed)
	}
	return id, nil
}

// Open decrypts a value sealed by Seal with the same associated data. It
// returns an error matching ErrMalformed, ErrUnknownKey or ErrOpen; the
// error never contains the ciphertext or the plaintext.
func (r *Ring) Open(ciphertext, ad []byte) ([]byte, error) {
	id, err := KeyID(ciphertext)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	gcm := r.keys[id]
	r.mu.RUnlock()
	if gcm == nil {
		return nil, &UnknownKeyError{ID: id}
	}
	nonce := ciphertext[headerSize : headerSize+nonceSize]
	pt, err := gcm.Open(nil, nonce, ciphertext[headerSize+nonceSize:], fullAD(ciphertext[:headerSize], ad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Wrapped data key format: version byte, nonce, AES-256-GCM(data key) + tag.
const wrappedSize = 1 + nonceSize + KeySize + tagSize

// WrapKey encrypts the data key id under the master key, for storage in the
// database. The wrapped key is bound to its id.
func WrapKey(master []byte, id uint32, dataKey []byte) ([]byte, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("wrap data key %d: data key must be %d bytes, got %d", id, KeySize, len(dataKey))
	}
	gcm, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("wrap data key %d: master %w", id, err)
	}
	out := make([]byte, 1+nonceSize, wrappedSize)
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("wrap data key %d: generate nonce: %w", id, err)
	}
	return gcm.Seal(out, out[1:], dataKey, wrapAD(id)), nil
}

// UnwrapKey decrypts a data key wrapped by WrapKey. A master key that does
// not match gives an error matching ErrMasterKeyMismatch.
func UnwrapKey(master []byte, id uint32, wrapped []byte) ([]byte, error) {
	gcm, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %d: master %w", id, err)
	}
	if len(wrapped) != wrappedSize || wrapped[0] != version1 {
		return nil, fmt.Errorf("unwrap data key %d: %w", id, ErrMalformed)
	}
	key, err := gcm.Open(nil, wrapped[1:1+nonceSize], wrapped[1+nonceSize:], wrapAD(id))
	if err != nil {
		return nil, ErrMasterKeyMismatch
	}
	return key, nil
}

func wrapAD(id uint32) []byte {
	return AD("data_keys", fmt.Sprint(id), "key")
}
