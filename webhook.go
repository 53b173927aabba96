package main

import "net/http"

// hookTarget is what a webhook needs of a service.
type hookTarget struct {
	Secret  string
	Branch  string
	Trigger func() // asks for a fetch and deploy soon; never blocks
}

// webhookHandler serves POST /hook/NAME; lookup returns false for an unknown service.
func webhookHandler(lookup func(name string) (hookTarget, bool)) http.Handler {
	return http.NotFoundHandler()
}
