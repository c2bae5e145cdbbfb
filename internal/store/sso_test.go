package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/store"
)

func TestSSOGrantsAreSingleUse(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateUser(ctx, user("alice@example.com")))
		g := &gatehouse.SSOGrant{Hash: hashOf("ghc_1"), Kind: gatehouse.GrantCLICode, User: "alice@example.com", Data: "challenge", ExpiresAt: time.Now().Add(time.Minute)}
		must(t, s.CreateSSOGrant(ctx, g))
		_, err := s.ConsumeSSOGrant(ctx, gatehouse.GrantRefresh, g.Hash)
		wantErr(t, err, gatehouse.ECodeNotFound, "") // another kind

		// Two racing redemptions: exactly one wins.
		var wg sync.WaitGroup
		wins := make(chan *gatehouse.SSOGrant, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got, err := s.ConsumeSSOGrant(ctx, gatehouse.GrantCLICode, g.Hash); err == nil {
					wins <- got
				}
			}()
		}
		wg.Wait()
		close(wins)
		if len(wins) != 1 {
			t.Fatalf("%d redemptions of one grant succeeded", len(wins))
		}
		got := <-wins
		if got.User != "alice@example.com" || got.Data != "challenge" {
			t.Errorf("consumed %+v", got)
		}

		expired := &gatehouse.SSOGrant{Hash: hashOf("ghc_2"), Kind: gatehouse.GrantCLICode, ExpiresAt: time.Now().Add(-time.Second)}
		must(t, s.CreateSSOGrant(ctx, expired))
		_, err = s.ConsumeSSOGrant(ctx, gatehouse.GrantCLICode, expired.Hash)
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		// Logout ends a session's refresh tokens; RevokeUserAccess all of a user's.
		must(t, s.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: hashOf("ghr_1"), Kind: gatehouse.GrantRefresh, User: "alice@example.com", SessionHash: "s1", ExpiresAt: time.Now().Add(time.Hour)}))
		must(t, s.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: hashOf("ghr_2"), Kind: gatehouse.GrantRefresh, User: "alice@example.com", SessionHash: "s2", ExpiresAt: time.Now().Add(time.Hour)}))
		must(t, s.DeleteSessionGrants(ctx, "s1"))
		_, err = s.ConsumeSSOGrant(ctx, gatehouse.GrantRefresh, hashOf("ghr_1"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		must(t, s.RevokeUserAccess(ctx, "alice@example.com"))
		_, err = s.ConsumeSSOGrant(ctx, gatehouse.GrantRefresh, hashOf("ghr_2"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")
	})
}

func TestSetUserGroups(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateUser(ctx, user("alice@example.com")))
		must(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "old", Members: []string{"alice@example.com"}}))
		v0 := version(t, s)
		must(t, s.SetUserGroups(ctx, "alice@example.com", []string{"b", "a", "b"}))
		if version(t, s) == v0 {
			t.Error("a membership change must bump the config version")
		}
		u, err := s.GetUser(ctx, "alice@example.com")
		must(t, err)
		if diff := cmp.Diff([]string{"a", "b"}, u.Groups); diff != "" {
			t.Errorf("groups (-want +got):\n%s", diff)
		}
		v1 := version(t, s)
		must(t, s.SetUserGroups(ctx, "alice@example.com", []string{"a", "b"}))
		if version(t, s) != v1 {
			t.Error("an unchanged membership must not bump the config version")
		}
		_, err = s.GetGroup(ctx, "old")
		must(t, err) // the group stays; only the membership went
		wantErr(t, s.SetUserGroups(ctx, "nobody", nil), gatehouse.ECodeNotFound, "")
	})
}

func TestSCIMTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		st := &gatehouse.SCIMToken{Hash: hashOf("ghscim_1")}
		must(t, s.CreateSCIMToken(ctx, st))
		got, err := s.SCIMTokenByHash(ctx, st.Hash)
		must(t, err)
		if got.ID != st.ID {
			t.Errorf("by hash: %+v", got)
		}
		must(t, s.RevokeSCIMToken(ctx, st.ID, time.Now()))
		_, err = s.SCIMTokenByHash(ctx, st.Hash)
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		wantErr(t, s.RevokeSCIMToken(ctx, "nope", time.Now()), gatehouse.ECodeNotFound, "")
		list, err := s.ListSCIMTokens(ctx)
		must(t, err)
		if len(list) != 1 || list[0].RevokedAt == nil {
			t.Errorf("list: %+v", list)
		}
	})
}
