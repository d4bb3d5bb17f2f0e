// Package fleet owns the wire types of the fleet API shared by the server and
// agents (enrollment, desired state, status reports, inventory records) and a
// client for it. Its subpackage agent runs on targets.
package fleet
