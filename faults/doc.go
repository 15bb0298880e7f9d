//go:build faults || cluster

// Package faults holds the fault-injection tests: each runs the whole system (internal/stack),
// places a stream of orders of every outcome, breaks something in the middle of it (a killed
// service, a restarted broker or database, duplicated or poisoned messages), waits until every
// accepted order has finished its saga, and audits the four databases with internal/ops.
//
// They restart the machine's RabbitMQ and PostgreSQL, so they are kept behind the faults build
// tag and never run in parallel: make test-faults.
//
// Behind the cluster build tag, with the same harness, the tests that go past one machine: a
// RabbitMQ cluster of three scratch nodes that loses the node leading most queues, the same
// cluster with each node in a network namespace of its own and one node cut off by a partition,
// and a scratch PostgreSQL primary that fails over to its synchronous standby. They start
// everything they use beside the machine's own servers (the namespaces, their links and a bridge
// included) and leave those untouched: make cluster-test.
package faults
