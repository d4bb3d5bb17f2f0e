// Package dashboard is cairn's operator web interface, served by cairn serve
// at /: fleet, target, release and rollout, events and lineage pages
// rendered on the server with html/template from embedded files, charts
// drawn as SVG, a login form turning the admin or read-only token into a
// session cookie, and server-sent events that tell open pages to refresh.
// Pages work without JavaScript; only the live updates need it.
package dashboard
