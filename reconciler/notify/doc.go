// Package notify posts reconciler events to the webhooks of Alert objects:
// generic JSON signed with HMAC-SHA256 (X-Cairn-Signature) or Slack format.
package notify
