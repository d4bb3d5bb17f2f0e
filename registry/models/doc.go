// Package models packs, pushes, pulls and inspects machine-learning models as
// OCI artifacts in the CNCF ModelPack format, and reads KitOps ModelKits and
// tar-packed ModelPack layers written by other tools (modctl, oras). Files
// stream through it: every byte is hashed while it moves and verified against
// its digest, and no path of an artifact may escape the output folder.
package models
