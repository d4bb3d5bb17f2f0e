package record

import (
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// Admitted is what admission keeps of one release: the objects of the
// commit that admitted it.
type Admitted struct {
	Commit   string                    `json:"commit"`
	Release  manifests.Release         `json:"release"`
	Model    manifests.Model           `json:"model"`
	Policy   manifests.RolloutPolicy   `json:"policy"`
	Profiles []manifests.DeviceProfile `json:"profiles"`
	// Unfit maps targets that cannot take the model to the reason.
	Unfit map[string]string `json:"unfit,omitempty"`
	// Datasets are the model's trainedOn datasets: drift compares live
	// inputs with the first one that has a profile.
	Datasets []manifests.Dataset `json:"datasets,omitempty"`
}

// Release is the stored record of one release.
type Release struct {
	Name string
	// Admitted is the admitted snapshot; nil when no commit of the release
	// was ever admitted (a policy denied each).
	Admitted *Admitted
	// Rollout is the rollout engine's state.
	Rollout rollout.State
	// Status is what the status API shows: conditions, counters, the
	// denial and HealthySince (promotion gates read it back).
	Status    fleet.ReleaseInfo
	UpdatedAt time.Time
	// Err is set when the stored record does not decode: Status then holds
	// the name and a Stalled condition saying why, and the reconciler must
	// leave the record as it is (see Stalled).
	Err error
}

// Commit is the commit that admitted the release ("" when never admitted).
func (r *Release) Commit() string {
	if r.Admitted == nil {
		return ""
	}
	return r.Admitted.Commit
}

// ReasonUndecodable is the reason of the Stalled condition of a record that
// does not decode.
const ReasonUndecodable = "RecordUndecodable"
