package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"
)

// A PKCS#11 module is initialized once per process (C_Initialize), so
// signers on the same module share one reference-counted module.
//
// Recovery from a device fault may need the module itself re-initialised
// (C_Finalize, C_Initialize): tpm2-pkcs11, for one, keeps failing with
// CKR_GENERAL_ERROR after its TPM broker restarts until it is. Every call
// sequence of every signer on the module holds mu shared; reinit holds it
// exclusively and bumps gen. Sessions and object handles are only valid in
// the generation they were obtained in: a signer that finds its session or
// key from an older generation re-opens, logs in and finds the key again
// (without closing the old handle, whose number the module may have given
// to someone else since).
type module struct {
	path    string
	ctx     P11 // *p11.Ctx (a fake in unit tests)
	refs    int // guarded by modules
	ownInit bool

	mu  sync.RWMutex
	gen atomic.Uint64
}

var modules = struct {
	sync.Mutex
	loaded map[string]*p11.Ctx // dlopen'ed libraries; never dlclose'd
	open   map[string]*module
}{loaded: map[string]*p11.Ctx{}, open: map[string]*module{}}

func acquireModule(path string) (*module, error) {
	modules.Lock()
	defer modules.Unlock()
	if m := modules.open[path]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := modules.loaded[path]
	if ctx == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("signer/pkcs11: module-path: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("signer/pkcs11: module-path %s is not a regular file", path)
		}
		ctx = p11.New(path)
		if ctx == nil {
			return nil, fmt.Errorf("signer/pkcs11: module-path %s is not a loadable PKCS#11 module (dlopen or C_GetFunctionList failed)", path)
		}
		modules.loaded[path] = ctx
	}
	m := &module{path: path, ctx: ctx, refs: 1, ownInit: true}
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return nil, fmt.Errorf("signer/pkcs11: C_Initialize %s: %w", path, err)
		}
		m.ownInit = false // someone else in this process owns it
	}
	modules.open[path] = m
	return m, nil
}

// reinit finalizes and initializes the module again, after waiting for
// every call in flight. Only a module this package initialized is
// re-initialised; for another owner's it does nothing.
func (m *module) reinit() error {
	if !m.ownInit {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.ctx.Finalize() // fails (CKR_CRYPTOKI_NOT_INITIALIZED) after a failed reinit
	m.gen.Add(1)
	if err := m.ctx.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return fmt.Errorf("signer/pkcs11: re-initialise module %s: C_Initialize: %w", m.path, err)
	}
	return nil
}

func (m *module) release() {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	if modules.open[m.path] == m {
		delete(modules.open, m.path)
	}
	if m.ownInit {
		m.mu.Lock()
		_ = m.ctx.Finalize()
		m.mu.Unlock()
	}
}
