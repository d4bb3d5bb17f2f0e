package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// Commit status providers.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// StatusProvider posts the outcome of each release's rollout as a status of
// the commit it was admitted from, as Flux's notification-controller does:
// GitHub (POST {address}/repos/{repository}/statuses/{sha}) or GitLab (POST
// {address}/projects/{repository}/statuses/{sha}).
type StatusProvider struct {
	// Name identifies the provider in the outbox (default: the provider).
	Name string `json:"name,omitempty"`
	// Provider is github or gitlab.
	Provider string `json:"provider"`
	// Address is the API base URL: https://api.github.com (GitHub
	// Enterprise: https://HOST/api/v3) or https://gitlab.com/api/v4
	// (self-hosted: https://HOST/api/v4). Default: the public one.
	Address string `json:"address,omitempty"`
	// Repository is owner/name on GitHub; a project id or its full path
	// (group/project) on GitLab.
	Repository string `json:"repository"`
	// TokenFile holds the API token, read at every delivery (so a rotated
	// token is used at once); it is never stored in the outbox.
	TokenFile string `json:"tokenFile"`
	// TargetURL, when set, is linked from the status (a dashboard page).
	TargetURL string `json:"targetURL,omitempty"`
}

// Check reports what makes the provider unusable; it fills the defaults.
func (p *StatusProvider) Check() error {
	switch p.Provider {
	case ProviderGitHub:
		if p.Address == "" {
			p.Address = "https://api.github.com"
		}
		if owner, name, ok := strings.Cut(p.Repository, "/"); !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("commit status %s: repository %q: want owner/name", p.Provider, p.Repository)
		}
	case ProviderGitLab:
		if p.Address == "" {
			p.Address = "https://gitlab.com/api/v4"
		}
		if p.Repository == "" {
			return fmt.Errorf("commit status %s: repository: want a project id or group/project", p.Provider)
		}
	default:
		return fmt.Errorf("commit status provider %q: want github or gitlab", p.Provider)
	}
	if p.Name == "" {
		p.Name = p.Provider
	}
	if p.TokenFile == "" {
		return fmt.Errorf("commit status %s: tokenFile is required", p.Name)
	}
	u, err := url.Parse(p.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("commit status %s: address %q: want an http(s) URL", p.Name, p.Address)
	}
	p.Address = strings.TrimSuffix(p.Address, "/")
	return nil
}

// commitState maps an event to the commit state of provider and a
// description; ok is false for events that say nothing about a rollout's
// outcome on its commit (drift, offline targets, ignored commands).
func commitState(provider string, e fleet.Event) (state string, ok bool) {
	gh := provider == ProviderGitHub
	pick := func(github, gitlab string) (string, bool) {
		if gh {
			return github, true
		}
		return gitlab, true
	}
	switch e.Type {
	case manifests.EventReleaseAdmitted, manifests.EventRolloutPaused:
		return pick("pending", "pending")
	case manifests.EventRolloutStarted, manifests.EventWaveStarted, manifests.EventRolloutResumed, manifests.EventRolloutRetried:
		return pick("pending", "running")
	case manifests.EventRolloutDone:
		return pick("success", "success")
	case manifests.EventRolloutFailed, manifests.EventRolledBack, manifests.EventPolicyDenied:
		return pick("failure", "failed")
	case manifests.EventRolloutAborted, manifests.EventRolloutSuperseded:
		return pick("error", "canceled")
	case manifests.EventCommitRejected:
		return pick("error", "failed")
	}
	return "", false
}

// statusContext is the status's context (GitHub) or name (GitLab): one per
// release, so a commit shows each release's rollout; a rejected commit
// (no release) gets "cairn".
func statusContext(e fleet.Event) string {
	if e.Release == "" {
		return "cairn"
	}
	return "cairn/" + e.Release
}

// statusBody is the JSON both APIs take: GitHub reads context, GitLab name.
type statusBody struct {
	State       string `json:"state"`
	Context     string `json:"context,omitempty"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

// statusMessage is the delivery of one event to provider p, or ok false
// when the event has no commit or no commit state.
func statusMessage(p StatusProvider, e fleet.Event) (m message, ok bool) {
	if e.Commit == "" {
		return m, false
	}
	state, ok := commitState(p.Provider, e)
	if !ok {
		return m, false
	}
	desc := e.Type
	if e.Message != "" {
		desc += ": " + e.Message
	}
	if r := []rune(desc); len(r) > 140 { // GitHub refuses longer descriptions
		desc = string(r[:139]) + "…"
	}
	b := statusBody{State: state, Description: desc, TargetURL: p.TargetURL}
	var u string
	if p.Provider == ProviderGitHub {
		b.Context = statusContext(e)
		u = p.Address + "/repos/" + p.Repository + "/statuses/" + url.PathEscape(e.Commit)
	} else {
		b.Name = statusContext(e)
		u = p.Address + "/projects/" + url.PathEscape(p.Repository) + "/statuses/" + url.PathEscape(e.Commit)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return m, false
	}
	return message{
		id:       deliveryID("commit-status/"+p.Name, []fleet.Event{e}),
		alert:    "commit-status/" + p.Name,
		url:      u,
		provider: p.Name,
		body:     body,
		events:   1,
		// A later status of the same commit and context replaces an
		// earlier one still pending, so a retried "pending" never lands
		// after the "success" that followed it.
		statusKey: p.Name + " " + e.Commit + " " + statusContext(e),
	}, true
}

// authorize sets the provider's token on req.
func (p StatusProvider) authorize(req *http.Request) error {
	b, err := os.ReadFile(p.TokenFile)
	if err != nil {
		return fmt.Errorf("commit status %s: read token: %w", p.Name, err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return fmt.Errorf("commit status %s: token file %s is empty", p.Name, p.TokenFile)
	}
	if p.Provider == ProviderGitHub {
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	} else {
		req.Header.Set("PRIVATE-TOKEN", token)
	}
	return nil
}

// alreadySet reports an answer that means the status is already in the
// posted state: GitLab refuses a transition to the state a status has
// (400 "Cannot transition status via :run from :running").
func (p StatusProvider) alreadySet(status int, body string) bool {
	return p.Provider == ProviderGitLab && status == http.StatusBadRequest && strings.Contains(body, "Cannot transition status")
}
