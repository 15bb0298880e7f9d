package broker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ordersaga/ordersaga/pkg/failure"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	opts := ConsumerOptions{}
	opts.defaults()
	unknown := errors.New("something odd")
	transient := fmt.Errorf("commit: %w", &pgconn.PgError{Code: "57P01"}) // admin shutdown
	permanent := failure.Permanent(errors.New("no items"))
	rejected := Rejected{1: errors.New("bad event")}
	tests := []struct {
		name             string
		err              error
		n, try, failures int
		want             verdict
	}{
		{"success acks", nil, 10, 1, 0, ack},
		{"success after retries acks", nil, 1, 3, 4, ack},
		{"a rejection settles the batch", rejected, 10, 1, 0, settle},
		{"a rejection of one delivery settles it", Rejected{0: errors.New("bad")}, 1, 1, 0, settle},
		{"a dependency away waits, whole batch", transient, 10, 1, 0, wait},
		{"a dependency away waits, one delivery", transient, 1, 5, 9, wait},
		{"a permanent error splits a batch", permanent, 10, 1, 0, split},
		{"an unknown error splits a batch", unknown, 2, 1, 0, split},
		{"a permanent error dead-letters one delivery", permanent, 1, 1, 0, deadLetter},
		{"an unknown error is retried in process", unknown, 1, 1, 0, retry},
		{"retried until the tries are spent", unknown, 1, opts.UnknownErrorTries - 1, 0, retry},
		{"then put back with a failure counted", unknown, 1, opts.UnknownErrorTries, 0, putBack},
		{"put back while failures stay under the limit", unknown, 1, opts.UnknownErrorTries, opts.FailureLimit - 2, putBack},
		{"dead-lettered at the failure limit", unknown, 1, opts.UnknownErrorTries, opts.FailureLimit - 1, exhausted},
		{"a panic counts as an unknown error", errors.New("handler panicked: boom"), 1, 1, 0, retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := decide(tt.err, tt.n, tt.try, tt.failures, opts); got != tt.want {
				t.Errorf("decide(%v, n=%d, try=%d, failures=%d) = %d, want %d", tt.err, tt.n, tt.try, tt.failures, got, tt.want)
			}
		})
	}
}

func TestArrive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		count, redeliveries int
		want                arrival
	}{
		{"first delivery", 0, 0, handle},
		{"redelivered a few times", RenewAt - 1, 0, handle},
		{"renewed at RenewAt", RenewAt, 0, renew},
		{"renewed while the total stays under the limit", RenewAt, RedeliveryLimit - RenewAt - 1, renew},
		{"dead-lettered at the redelivery limit", RenewAt, RedeliveryLimit - RenewAt, tooOften},
		{"a renewed copy is handled again", 0, RedeliveryLimit - 1, handle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := arrive(tt.count, tt.redeliveries); got != tt.want {
				t.Errorf("arrive(%d, %d) = %d, want %d", tt.count, tt.redeliveries, got, tt.want)
			}
		})
	}
}
