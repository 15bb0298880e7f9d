package order

// ListQuery selects a page of orders, newest first.
type ListQuery struct {
	CustomerID string // only this customer's orders, when set
	Status     Status // only orders in this status, when set
	PageSize   int
	PageToken  string // opaque, from the previous page; "" for the first page
}

// Change is the status change an event made to an order.
type Change struct {
	Event Event
	StatusChange
	Update Update // what the order's watchers are told
}
