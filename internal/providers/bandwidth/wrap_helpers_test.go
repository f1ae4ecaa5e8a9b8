package bandwidth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// writeAPIError answers as Catapult does a refused request:
// {category, code, message} with status.
func writeAPIError(w http.ResponseWriter, status int, category, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"category": category, "code": code, "message": message})
	_, _ = w.Write(b)
}

// writeCallNotFound answers a read of call id with Catapult's 404.
func writeCallNotFound(w http.ResponseWriter, id string) {
	writeAPIError(w, http.StatusNotFound, "not-found", "call-not-found", "The call `"+id+"` could not be found")
}

// writeBridgedElsewhere refuses a bridge update naming call id, still in
// another bridge.
func writeBridgedElsewhere(w http.ResponseWriter, id string) {
	writeAPIError(w, http.StatusBadRequest, "bad-request", "bridge-bridged-callId", "The callId `"+id+"` is already in another bridge")
}

// isUnhold reports whether r is the unhold of bridge b1 (its two calls
// named, audio on), reading r's body and leaving it for the handler.
func isUnhold(r *http.Request, b1 string) bool {
	if r.Method != http.MethodPost || b1 == "" || r.URL.Path != "/users/"+userID+"/bridges/"+b1 {
		return false
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	var upd struct {
		CallIDs     []string `json:"callIds"`
		BridgeAudio *bool    `json:"bridgeAudio"`
	}
	return json.Unmarshal(body, &upd) == nil && len(upd.CallIDs) == 2 && upd.BridgeAudio != nil && *upd.BridgeAudio
}
