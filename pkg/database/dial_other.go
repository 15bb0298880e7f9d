//go:build !linux

package database

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist: keepalive probes remain.
func setUserTimeout(string, string, syscall.RawConn) error { return nil }
