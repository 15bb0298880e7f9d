// Command openapidoc finishes the REST facade's OpenAPI document after protoc-gen-openapiv2 wrote
// it: it marks the unversioned alias routes, which the generator cannot tell apart from the
// routes they alias (options apply per RPC, not per binding), and converts the result to
// OpenAPI 3, where it declares the streams as what the facade sends (streamMediaTypes). Both
// documents are validated before they are written.
//
// Usage (from make generate): openapidoc SWAGGER_JSON OPENAPI3_JSON
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
)

// versioned is the prefix of the routes of the current API version; every other route is an
// alias kept from the first version of the service.
const versioned = "/v1/"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: openapidoc SWAGGER_JSON OPENAPI3_JSON")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "openapidoc:", err)
		os.Exit(1)
	}
}

func run(swaggerPath, openapi3Path string) error {
	b, err := os.ReadFile(swaggerPath)
	if err != nil {
		return err
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(b, &doc2); err != nil {
		return fmt.Errorf("%s: %w", swaggerPath, err)
	}
	if err := markAliases(&doc2); err != nil {
		return err
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return fmt.Errorf("convert to OpenAPI 3: %w", err)
	}
	if err := streamMediaTypes(doc3); err != nil {
		return err
	}
	loader := openapi3.NewLoader()
	if err := doc3.Validate(loader.Context); err != nil {
		return fmt.Errorf("OpenAPI 3 document: %w", err)
	}
	if err := write(swaggerPath, &doc2); err != nil {
		return err
	}
	return write(openapi3Path, doc3)
}

// markAliases marks every operation outside /v1/ as the deprecated alias of the /v1/ operation
// on the same path, with an operation id of its own.
func markAliases(doc *openapi2.T) error {
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		if strings.HasPrefix(path, versioned) {
			continue
		}
		target := strings.TrimSuffix(versioned, "/") + path
		twin, ok := doc.Paths[target]
		if !ok {
			return fmt.Errorf("route %s is neither under %s nor an alias of a route there", path, versioned)
		}
		for method, op := range doc.Paths[path].Operations() {
			of := twin.GetOperation(method)
			if of == nil {
				return fmt.Errorf("%s %s is an alias of nothing: %s has no %s", method, path, target, method)
			}
			op.Deprecated = true
			op.OperationID = of.OperationID + "Unversioned"
			op.Summary = of.Summary + " (unversioned alias)"
			op.Description = fmt.Sprintf("The unversioned alias of %s %s, kept for the clients of the first version "+
				"of the service: the same operation, request and responses. New clients use %s.\n\n%s",
				method, target, target, of.Description)
			if op.Extensions == nil {
				op.Extensions = map[string]any{}
			}
			op.Extensions["x-alias-of"] = method + " " + target
		}
	}
	return nil
}

// The media types of a server stream over REST (services/order/internal/grpcapi).
const (
	ndjson      = "application/x-ndjson"
	eventStream = "text/event-stream"
)

// streamMediaTypes declares the 200 response of every server-streaming operation as the
// facade sends it. protoc-gen-openapiv2 calls it application/json with the schema of one stream
// item, which no JSON parser reads: the body is one such object per line, and a validating
// proxy or a generated client that parses it as JSON fails. In OpenAPI 3 the body is text in
// two media types, newline-delimited JSON (the default) and Server-Sent Events (on Accept:
// text/event-stream), and the item schema becomes a component of its own, named after the
// response it wraps (WatchOrderResponse → WatchOrderStreamItem), for clients that parse the
// lines.
func streamMediaTypes(doc *openapi3.T) error {
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			ok := op.Responses.Status(200)
			if ok == nil || ok.Value == nil {
				continue
			}
			mt := ok.Value.Content.Get("application/json")
			if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
				continue
			}
			item := mt.Schema.Value
			wraps, isStream := strings.CutPrefix(item.Title, "Stream result of ")
			if !isStream {
				continue
			}
			result := item.Properties["result"]
			if result == nil || !strings.HasSuffix(result.Ref, "/"+wraps) {
				return fmt.Errorf("%s %s: stream item %q does not wrap %s in result", method, path, item.Title, wraps)
			}
			name := strings.TrimSuffix(wraps, "Response") + "StreamItem"
			if doc.Components.Schemas[name] != nil {
				return fmt.Errorf("%s %s: schema %s exists already", method, path, name)
			}
			item.Title = ""
			item.Description = "One line of the newline-delimited JSON stream: the result, or the error that ended the stream."
			doc.Components.Schemas[name] = openapi3.NewSchemaRef("", item)
			ok.Value.Description = openapi3.Ptr("The stream: an item after every change, until the end.")
			ok.Value.Content = openapi3.Content{
				ndjson: &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", &openapi3.Schema{
					Type:        &openapi3.Types{openapi3.TypeString},
					Description: fmt.Sprintf("Newline-delimited JSON: one %s object per line (#/components/schemas/%s).", name, name),
				})},
				eventStream: &openapi3.MediaType{Schema: openapi3.NewSchemaRef("", &openapi3.Schema{
					Type: &openapi3.Types{openapi3.TypeString},
					Description: fmt.Sprintf("Server-Sent Events, on Accept: text/event-stream: one event per change, its data "+
						"a %s as JSON; an event named error, its data a Status, when the stream fails.", wraps),
				})},
			}
		}
	}
	return nil
}

func write(path string, doc any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out.WriteByte('\n')
	return os.WriteFile(path, out.Bytes(), 0o644)
}
