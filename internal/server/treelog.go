package server

import (
	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/storage"
)

// treeLogOf is the store's transparency side for the AuditLog service
// (nil when the store keeps no tree checkpoints: the service answers
// Unavailable).
func treeLogOf(s storage.AuditStore) api.TreeLog {
	t, _ := s.(api.TreeLog)
	return t
}
