// Package openapi holds the OpenAPI (Swagger 2.0) document of the REST facade, generated from the
// same http rules as the gateway.
package openapi

import _ "embed"

// JSON is the OpenAPI document of order.v1.OrderService's REST routes.
//
//go:embed ordersaga.swagger.json
var JSON []byte
