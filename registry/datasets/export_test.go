package datasets

import "time"

// SetRacyWindow lets tests cache files they have just written.
func SetRacyWindow(d time.Duration) (restore func()) {
	old := racyWindow
	racyWindow = d
	return func() { racyWindow = old }
}
