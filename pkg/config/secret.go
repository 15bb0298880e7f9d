package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// withPasswordFile returns urls (one, or several separated by commas, as AMQP_URL takes them)
// with the password read from file, which the variable key names (AMQP_PASSWORD_FILE,
// ORDER_DATABASE_PASSWORD_FILE, …), so that a secret mounted as a file never appears in the
// environment. With file "", urls is returned as it is. Each URL must name its user; a
// trailing newline of the file is dropped. Errors never quote the password or the URLs.
func withPasswordFile(key, urls, file string) (string, error) {
	if file == "" {
		return urls, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", fmt.Errorf("%s: %s is empty", key, file)
	}
	parts := strings.Split(urls, ",")
	for i, raw := range parts {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", fmt.Errorf("%s: the password needs a URL (scheme://user@host/…), and a URL does not parse as one", key)
		}
		if u.User == nil || u.User.Username() == "" {
			return "", errors.New(key + ": the URL names no user for the password")
		}
		user := escapeAll(u.User.Username())
		u.User = nil
		prefix := u.Scheme + "://"
		parts[i] = prefix + user + ":" + escapeAll(password) + "@" + strings.TrimPrefix(u.String(), prefix)
	}
	return strings.Join(parts, ","), nil
}

// escapeAll percent-encodes every byte of s but the unreserved characters of RFC 3986, so that
// a password holding ",", "@" or "/" can neither split a list of URLs nor end the user info.
func escapeAll(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// masked is what a secret is logged as.
const masked = "xxxxx"

var (
	// scheme://user:password@ — the password stops at the last @ before the host.
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s,]*:)[^\s,/]*@`)
	// password=… as a libpq keyword (quoted or not) or a URL query parameter.
	keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&,]+)`)
)

// maskURL replaces every password in s (URLs, lists of them, libpq strings, error messages
// quoting them) with xxxxx.
func maskURL(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+masked+"@")
	return keywordPassword.ReplaceAllString(s, "${1}"+masked)
}
