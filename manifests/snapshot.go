package manifests

import (
	"fmt"
	"slices"
	"strings"
)

// Objects is the mutable set of decoded objects a Snapshot is made from.
type Objects struct {
	Datasets        []Dataset
	Models          []Model
	DeviceProfiles  []DeviceProfile
	RolloutPolicies []RolloutPolicy
	Releases        []Release
	Alerts          []Alert
}

// Snapshot is the immutable, validated set of objects of one commit. Every
// list is sorted by name; accessors return deep copies, so callers may change
// what they get without changing the snapshot.
type Snapshot struct {
	objs  Objects
	files []string
}

// NewSnapshot copies objs, sorts each kind by name and returns the snapshot.
// It does not validate: Load does.
func NewSnapshot(objs Objects) *Snapshot {
	s := &Snapshot{objs: Objects{
		Datasets:        deepCopyAll(objs.Datasets),
		Models:          deepCopyAll(objs.Models),
		DeviceProfiles:  deepCopyAll(objs.DeviceProfiles),
		RolloutPolicies: deepCopyAll(objs.RolloutPolicies),
		Releases:        deepCopyAll(objs.Releases),
		Alerts:          deepCopyAll(objs.Alerts),
	}}
	sortByName(s.objs.Datasets, func(o Dataset) string { return o.Metadata.Name })
	sortByName(s.objs.Models, func(o Model) string { return o.Metadata.Name })
	sortByName(s.objs.DeviceProfiles, func(o DeviceProfile) string { return o.Metadata.Name })
	sortByName(s.objs.RolloutPolicies, func(o RolloutPolicy) string { return o.Metadata.Name })
	sortByName(s.objs.Releases, func(o Release) string { return o.Metadata.Name })
	sortByName(s.objs.Alerts, func(o Alert) string { return o.Metadata.Name })
	return s
}

func sortByName[T any](s []T, name func(T) string) {
	slices.SortStableFunc(s, func(a, b T) int { return strings.Compare(name(a), name(b)) })
}

func find[T interface{ DeepCopy() T }](s []T, name string, key func(T) string) (T, bool) {
	i, ok := slices.BinarySearchFunc(s, name, func(o T, n string) int { return strings.Compare(key(o), n) })
	if !ok {
		var zero T
		return zero, false
	}
	return s[i].DeepCopy(), true
}

// Datasets returns the datasets sorted by name.
func (s *Snapshot) Datasets() []Dataset { return deepCopyAll(s.objs.Datasets) }

// Models returns the models sorted by name.
func (s *Snapshot) Models() []Model { return deepCopyAll(s.objs.Models) }

// DeviceProfiles returns the device profiles sorted by name.
func (s *Snapshot) DeviceProfiles() []DeviceProfile { return deepCopyAll(s.objs.DeviceProfiles) }

// RolloutPolicies returns the rollout policies sorted by name.
func (s *Snapshot) RolloutPolicies() []RolloutPolicy { return deepCopyAll(s.objs.RolloutPolicies) }

// Releases returns the releases sorted by name.
func (s *Snapshot) Releases() []Release { return deepCopyAll(s.objs.Releases) }

// Alerts returns the alerts sorted by name.
func (s *Snapshot) Alerts() []Alert { return deepCopyAll(s.objs.Alerts) }

// Dataset returns the dataset named name.
func (s *Snapshot) Dataset(name string) (Dataset, bool) {
	return find(s.objs.Datasets, name, func(o Dataset) string { return o.Metadata.Name })
}

// Model returns the model named name.
func (s *Snapshot) Model(name string) (Model, bool) {
	return find(s.objs.Models, name, func(o Model) string { return o.Metadata.Name })
}

// DeviceProfile returns the device profile named name.
func (s *Snapshot) DeviceProfile(name string) (DeviceProfile, bool) {
	return find(s.objs.DeviceProfiles, name, func(o DeviceProfile) string { return o.Metadata.Name })
}

// RolloutPolicy returns the rollout policy named name.
func (s *Snapshot) RolloutPolicy(name string) (RolloutPolicy, bool) {
	return find(s.objs.RolloutPolicies, name, func(o RolloutPolicy) string { return o.Metadata.Name })
}

// Release returns the release named name.
func (s *Snapshot) Release(name string) (Release, bool) {
	return find(s.objs.Releases, name, func(o Release) string { return o.Metadata.Name })
}

// Alert returns the alert named name.
func (s *Snapshot) Alert(name string) (Alert, bool) {
	return find(s.objs.Alerts, name, func(o Alert) string { return o.Metadata.Name })
}

// Files returns the manifest files the snapshot was loaded from, relative to
// the repository root, sorted. It is empty for a snapshot built in memory.
func (s *Snapshot) Files() []string { return slices.Clone(s.files) }

// Len returns the number of objects of every kind.
func (s *Snapshot) Len() int {
	o := s.objs
	return len(o.Datasets) + len(o.Models) + len(o.DeviceProfiles) + len(o.RolloutPolicies) + len(o.Releases) + len(o.Alerts)
}

// Counts returns the number of objects per kind, for kinds with any.
func (s *Snapshot) Counts() map[string]int {
	o := s.objs
	m := map[string]int{}
	for kind, n := range map[string]int{
		KindDataset: len(o.Datasets), KindModel: len(o.Models), KindDeviceProfile: len(o.DeviceProfiles),
		KindRolloutPolicy: len(o.RolloutPolicies), KindRelease: len(o.Releases), KindAlert: len(o.Alerts),
	} {
		if n > 0 {
			m[kind] = n
		}
	}
	return m
}

// Summary describes the snapshot in one line, e.g. "12 objects in 4 files
// (2 Datasets, 2 Models, 1 DeviceProfile, 1 RolloutPolicy, 2 Releases, 1 Alert)".
func (s *Snapshot) Summary() string {
	counts := s.Counts()
	var parts []string
	for _, k := range Kinds() {
		if n := counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, plural(k, n)))
		}
	}
	sum := fmt.Sprintf("%d %s in %d %s", s.Len(), plural("object", s.Len()), len(s.files), plural("file", len(s.files)))
	if len(parts) > 0 {
		sum += " (" + strings.Join(parts, ", ") + ")"
	}
	return sum
}

func plural(word string, n int) string {
	switch {
	case n == 1:
		return word
	case strings.HasSuffix(word, "y"):
		return strings.TrimSuffix(word, "y") + "ies"
	}
	return word + "s"
}

// Objects returns a deep copy of every object, each kind sorted by name.
func (s *Snapshot) Objects() Objects {
	return Objects{
		Datasets:        s.Datasets(),
		Models:          s.Models(),
		DeviceProfiles:  s.DeviceProfiles(),
		RolloutPolicies: s.RolloutPolicies(),
		Releases:        s.Releases(),
		Alerts:          s.Alerts(),
	}
}
