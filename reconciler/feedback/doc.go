// Package feedback stores what the fleet saw: sampled live inputs that
// targets upload, kept as content-addressed dataset versions with their
// lineage (observedBy the target, servedBy the model digest).
package feedback
