// Package fleetstate holds what the reconciler and the status API both know
// of targets beyond their wire types: when a target is online, its phase over
// its releases, and the entity tag and stored form of a desired state.
package fleetstate
