// Package openapi holds the OpenAPI documents of the REST facade, generated from the same http
// rules as the gateway: Swagger 2.0 as protoc-gen-openapiv2 writes it, and the same document
// converted to OpenAPI 3.0.
package openapi

import _ "embed"

// JSON is the OpenAPI (Swagger 2.0) document of order.v1.OrderService's REST routes, served at
// /openapi.json.
//
//go:embed ordersaga.swagger.json
var JSON []byte

// JSON3 is the same document as OpenAPI 3.0, served at /openapi3.json.
//
//go:embed ordersaga.openapi3.json
var JSON3 []byte
