// Package openlineage holds the OpenLineage wire types cairn emits (RunEvent
// spec 2-0-2 and cairn's facets, lineage/facets.json) and a Poster for an
// OpenLineage HTTP endpoint. It imports only the standard library.
package openlineage
