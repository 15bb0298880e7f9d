//go:build faults

// Package faults holds the fault-injection tests: each runs the whole system (internal/stack),
// places a stream of orders of every outcome, breaks something in the middle of it (a killed
// service, a restarted broker or database, duplicated or poisoned messages), waits until every
// accepted order has finished its saga, and audits the four databases with internal/ops.
//
// They restart the machine's RabbitMQ and PostgreSQL, so they are kept behind the faults build
// tag and never run in parallel: make test-faults.
package faults
