package nssim

import "testing"

// The per-domain index serves every listing; a session must leave it when it ends, or a
// long-running simulator would grow without bound and list from a stale superset.
func TestDomainIndexFollowsSessions(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	a, err := s.PlaceCall(InboundCall{Domain: "Alpha", User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PlaceCall(InboundCall{Domain: "beta", User: "1000"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Sessions("ALPHA"); len(got) != 1 || got[0].SessionID != a.SessionID {
		t.Fatalf("ALPHA lists %+v, want only %s", got, a.SessionID)
	}
	if got := s.Sessions(""); len(got) != 2 {
		t.Fatalf("every domain lists %d sessions, want 2", len(got))
	}
	for _, c := range s.Sessions("") {
		if err := s.Hangup(c.SessionID, "orig"); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inDomain) != 0 {
		t.Errorf("domain index after every session ended: %v", s.inDomain)
	}
}
