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
func ETag(models []fleet.DesiredModel) string { return KeepETag(models, nil) }

// KeepETag is the entity tag of a desired state that also keeps the
// releases named in keep (fleet.DesiredState.Keep); with none it is ETag.
func KeepETag(models []fleet.DesiredModel, keep []string) string {
	if models == nil {
		models = []fleet.DesiredModel{}
	}
	b, _ := json.Marshal(models)
	if len(keep) > 0 {
		k, _ := json.Marshal(keep)
		b = append(append(b, "\x00keep"...), k...)
	}
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
