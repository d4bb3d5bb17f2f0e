package manifests

import (
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
// list is sorted by name; accessors return copies.
type Snapshot struct {
	objs Objects
}

// NewSnapshot copies objs, sorts each kind by name and returns the snapshot.
// It does not validate: Load does.
func NewSnapshot(objs Objects) *Snapshot {
	s := &Snapshot{objs: Objects{
		Datasets:        slices.Clone(objs.Datasets),
		Models:          slices.Clone(objs.Models),
		DeviceProfiles:  slices.Clone(objs.DeviceProfiles),
		RolloutPolicies: slices.Clone(objs.RolloutPolicies),
		Releases:        slices.Clone(objs.Releases),
		Alerts:          slices.Clone(objs.Alerts),
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

func find[T any](s []T, name string, key func(T) string) (T, bool) {
	i, ok := slices.BinarySearchFunc(s, name, func(o T, n string) int { return strings.Compare(key(o), n) })
	if !ok {
		var zero T
		return zero, false
	}
	return s[i], true
}

// Datasets returns the datasets sorted by name.
func (s *Snapshot) Datasets() []Dataset { return slices.Clone(s.objs.Datasets) }

// Models returns the models sorted by name.
func (s *Snapshot) Models() []Model { return slices.Clone(s.objs.Models) }

// DeviceProfiles returns the device profiles sorted by name.
func (s *Snapshot) DeviceProfiles() []DeviceProfile { return slices.Clone(s.objs.DeviceProfiles) }

// RolloutPolicies returns the rollout policies sorted by name.
func (s *Snapshot) RolloutPolicies() []RolloutPolicy { return slices.Clone(s.objs.RolloutPolicies) }

// Releases returns the releases sorted by name.
func (s *Snapshot) Releases() []Release { return slices.Clone(s.objs.Releases) }

// Alerts returns the alerts sorted by name.
func (s *Snapshot) Alerts() []Alert { return slices.Clone(s.objs.Alerts) }

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
