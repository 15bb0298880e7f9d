package deadline

import "time"

// SetClock makes s read the time from now.
func SetClock(s *Sweeper, now func() time.Time) { s.now = now }
