package fleetstate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// ETag is the entity tag of a desired state with these models: the same
// models give the same tag on every replica and after restarts.
func ETag(models []fleet.DesiredModel) string {
	if models == nil {
		models = []fleet.DesiredModel{}
	}
	b, _ := json.Marshal(models)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// ETagWith is the entity tag of a desired state of models tagged etag and
// the evaluation runs encoded as runs (JSON).
func ETagWith(etag string, runs []byte) string {
	h := sha256.New()
	h.Write([]byte(etag))
	h.Write(runs)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// EncodeDesired returns the store record of a target's desired state.
func EncodeDesired(target string, models []fleet.DesiredModel) store.Desired {
	if models == nil {
		models = []fleet.DesiredModel{}
	}
	ds := fleet.DesiredState{Target: target, ETag: ETag(models), Models: models}
	b, _ := json.Marshal(ds)
	return store.Desired{Target: target, ETag: ds.ETag, Body: b}
}
