// Package client is a Go client of the transferd HTTP API.
//
// client.gen.go is generated from openapi.yaml by oapi-codegen (see
// generate.go; CI regenerates it and fails on any difference): the
// request and response types, a low-level Client and a ClientWithResponses
// whose methods decode every documented answer. This file adds what the
// generated code cannot know: that a transfer is followed by long polls
// until it settles, that a list is a chain of pages, and that a problem
// answer is an error.
//
// transferd's webhooks follow the Standard Webhooks specification (see
// openapi.yaml, webhooks): any library of that specification verifies
// their signatures, so this package has no verifier of its own.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"mime"
	"net/http"
	"time"
)

// Terminal reports whether a transfer in state s has ended and carries an
// outcome.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Error makes a problem answer usable as an error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("transferd: %d %s: %s", p.Status, p.Title, p.Detail)
	}
	return fmt.Sprintf("transferd: %d %s", p.Status, p.Title)
}

// ProblemOf returns the problem an answer carries: a *Problem when the
// answer is application/problem+json, another error for any other answer
// that is not 2xx, and nil for a 2xx.
func ProblemOf(resp *http.Response, body []byte) error {
	if resp == nil {
		return fmt.Errorf("transferd: no response")
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
		var p Problem
		if err := json.Unmarshal(body, &p); err == nil {
			return &p
		}
	}
	return fmt.Errorf("transferd: unexpected answer %s", resp.Status)
}

// pollWait is the Prefer: wait of each long poll. The server caps waits
// at 60 s; a shorter one keeps each request well inside common proxy
// timeouts.
const pollWait = "wait=25"

// idlePause is how WaitTransfer waits before it polls again after an
// answer that waited for nothing (Preference-Applied: wait=0): transferd
// answers a long poll at once when the transfer awaits the client's
// complete or cancel, and polling again at once would be a busy loop for
// as long as the consult lasts. A variable so that tests can replace it.
var idlePause = func(ctx context.Context) error {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TargetAnswered is a WaitTransfer condition: the target answered the
// consult (what a manual client waits for before CompleteTransfer).
func TargetAnswered(t *Transfer) bool { return t.TargetAnswered }

// WaitTransfer follows a transfer with long polls (GET with Prefer: wait)
// until until returns true for it or it is terminal, and returns it then.
// A nil until waits for the end. It returns ctx's error when ctx ends
// first, and a *Problem when the server answers with one. A manual
// transfer whose target answered awaits a complete or cancel, and
// transferd answers its long polls at once: it is then read once a second.
func (c *ClientWithResponses) WaitTransfer(ctx context.Context, id TransferID, until func(*Transfer) bool) (*Transfer, error) {
	for {
		res, err := c.GetTransferWithResponse(ctx, id, &GetTransferParams{Prefer: pollWait})
		if err != nil {
			return nil, err
		}
		if res.JSON200 == nil {
			if err := ProblemOf(res.HTTPResponse, res.Body); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("transferd: GET %s answered %s without a transfer", id, res.HTTPResponse.Status)
		}
		t := res.JSON200
		if t.State.Terminal() || (until != nil && until(t)) {
			return t, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if res.HTTPResponse.Header.Get("Preference-Applied") == "wait=0" {
			if err := idlePause(ctx); err != nil {
				return nil, err
			}
		}
	}
}

// Transfers iterates every transfer that params select, newest first,
// fetching pages as the loop consumes them. params.Cursor, if set, is
// where the iteration starts. The iteration stops at the first error,
// which it yields with a zero Transfer.
func (c *ClientWithResponses) Transfers(ctx context.Context, params ListTransfersParams) iter.Seq2[Transfer, error] {
	return func(yield func(Transfer, error) bool) {
		for {
			res, err := c.ListTransfersWithResponse(ctx, &params)
			if err == nil && res.JSON200 == nil {
				err = ProblemOf(res.HTTPResponse, res.Body)
				if err == nil {
					err = fmt.Errorf("transferd: list answered %s without a page", res.HTTPResponse.Status)
				}
			}
			if err != nil {
				yield(Transfer{}, err)
				return
			}
			for _, t := range res.JSON200.Items {
				if !yield(t, nil) {
					return
				}
			}
			if res.JSON200.NextCursor == "" {
				return
			}
			next := res.JSON200.NextCursor
			params.Cursor = &next
		}
	}
}

// NewNetSapiensRequest wraps a NetSapiens transfer as a create request
// (setting its provider).
func NewNetSapiensRequest(r NetSapiensTransferRequest) (CreateTransferRequest, error) {
	var req CreateTransferRequest
	err := req.FromNetSapiensTransferRequest(r)
	return req, err
}

// NewBandwidthRequest wraps a Bandwidth transfer as a create request
// (setting its provider).
func NewBandwidthRequest(r BandwidthTransferRequest) (CreateTransferRequest, error) {
	var req CreateTransferRequest
	err := req.FromBandwidthTransferRequest(r)
	return req, err
}
