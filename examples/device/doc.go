// Package device holds what installs cairn-agent on a device: the systemd
// unit (cairn-agent.service) and install.sh, with a test that installs into
// a scratch root.
package device
