package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// URLWithPasswordFile returns the URLs in urls (one, or several separated by commas, as
// AMQP_URL takes them) with the password read from the file named by the variable fileKey
// (AMQP_PASSWORD_FILE, ORDER_DATABASE_PASSWORD_FILE, …), so that a secret mounted as a file
// never appears in the environment. Without the variable, urls is returned as it is. Each URL
// must name its user; a trailing newline of the file is dropped.
func URLWithPasswordFile(urls, fileKey string) (string, error) {
	file := os.Getenv(fileKey)
	if file == "" {
		return urls, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileKey, err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", fmt.Errorf("%s: %s is empty", fileKey, file)
	}
	parts := strings.Split(urls, ",")
	for i, raw := range parts {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return "", fmt.Errorf("%s: a URL does not parse", fileKey)
		}
		if u.User == nil || u.User.Username() == "" {
			return "", errors.New(fileKey + ": the URL names no user for the password")
		}
		u.User = url.UserPassword(u.User.Username(), password)
		parts[i] = u.String()
	}
	return strings.Join(parts, ","), nil
}
