package hcloud

import (
	"context"
	"fmt"
	"io"
	"testing"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind Kind
		code string
	}{
		{hc.Error{Code: hc.ErrorCodeLocked}, RetryFast, "locked"},
		{hc.Error{Code: hc.ErrorCodeConflict}, RetryFast, "conflict"},
		{hc.Error{Code: hc.ErrorCodeRateLimitExceeded}, RetrySlow, "rate_limit_exceeded"},
		{hc.Error{Code: hc.ErrorCodeServerError}, RetrySlow, "server_error"},
		{hc.Error{Code: hc.ErrorCodeServiceError}, RetrySlow, "service_error"},
		{hc.Error{Code: hc.ErrorCodeBadGateway}, RetrySlow, "bad_gateway"},
		{hc.Error{Code: hc.ErrorCodeTimeout}, RetrySlow, "timeout"},
		{hc.Error{Code: "unavailable"}, RetrySlow, "unavailable"},
		{hc.Error{Code: hc.ErrorCodeUnauthorized}, Fatal, "unauthorized"},
		{hc.Error{Code: hc.ErrorCodeForbidden}, Fatal, "forbidden"},
		{hc.Error{Code: hc.ErrorCodeNotFound}, Fatal, "not_found"},
		{hc.Error{Code: hc.ErrorCodeResourceUnavailable}, Fatal, "resource_unavailable"},
		{hc.Error{Code: "user_action_required"}, Fatal, "user_action_required"},
		{hc.Error{Code: hc.ErrorCodeVolumeAlreadyAttached}, Fatal, "volume_already_attached"},
		{hc.ActionError{Code: "action_failed"}, Fatal, "action_failed"},
		{fmt.Errorf("x: %w", ErrActionRunning), RetryFast, "action_running"},
		{fmt.Errorf("x: %w", ErrUnexpectedOwner), Fatal, "unexpected_owner"},
		{fmt.Errorf("hcloud: %w 503", hc.ErrStatusCode), RetrySlow, "http_503"},
		{fmt.Errorf("hcloud: %w 403", hc.ErrStatusCode), Fatal, "http_error"},
		{context.DeadlineExceeded, RetrySlow, "timeout"},
		{io.ErrUnexpectedEOF, RetrySlow, "network"},
	} {
		err := classify("op", tc.err)
		e, ok := err.(*Error)
		if !ok || e.Kind != tc.kind || e.Code != tc.code || e.Op != "op" {
			t.Errorf("%v: got %+v, want %s/%s", tc.err, err, tc.kind, tc.code)
		}
		if KindOf(err) != tc.kind {
			t.Errorf("KindOf(%v) = %s", err, KindOf(err))
		}
	}
	if classify("op", nil) != nil || KindOf(nil) != 0 {
		t.Error("nil is not an error")
	}
}
