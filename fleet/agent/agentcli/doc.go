// Package agentcli is the command line of the device agent: the flags and
// the run of `cairn-agent` (cmd/cairn-agent, the small device binary) and
// of `cairn agent`, which takes the same flags. It links the agent and the
// model puller only (internal/depcheck keeps it that way).
package agentcli
