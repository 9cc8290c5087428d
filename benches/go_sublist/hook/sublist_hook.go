// This file is compiled into nats-server's own `server` package (see run.sh), because
// the sublist takes subscriptions of an unexported type: it exports that type under a
// name and a constructor, and nothing else.

package server

// SublistBenchSub is a subscription as the sublist stores it.
type SublistBenchSub = subscription

// NewSublistBenchSub makes a subscription to `subject`, in queue group `queue` if it is
// not empty.
func NewSublistBenchSub(subject, queue string) *SublistBenchSub {
	sub := &subscription{subject: []byte(subject)}
	if queue != "" {
		sub.queue = []byte(queue)
	}
	return sub
}
