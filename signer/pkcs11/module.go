package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// A PKCS#11 module is initialized once per process (C_Initialize), so
// signers on the same module share one reference-counted module.
type module struct {
	path    string
	ctx     *p11.Ctx
	refs    int
	ownInit bool // we called C_Initialize and so must call C_Finalize
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

func (m *module) release() {
	if m == nil { // a Signer built around a test fake
		return
	}
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.open, m.path)
	if m.ownInit {
		_ = m.ctx.Finalize()
	}
}
