package bwsim

import (
	"net/http"
	"time"
)

// apiCall is the v1 Call object (getCallsCallId.md; the 2016 docs add transferTo,
// transferCallerId, whisperAudio, bridge and tag). endTime and chargeableDuration are omitted
// until the call ended, as in the node SDK's fixture of an active call.
type apiCall struct {
	ID                   string            `json:"id"`
	Direction            string            `json:"direction"`
	From                 string            `json:"from"`
	To                   string            `json:"to"`
	State                string            `json:"state"`
	StartTime            string            `json:"startTime"`
	ActiveTime           string            `json:"activeTime,omitempty"`
	EndTime              string            `json:"endTime,omitempty"`
	ChargeableDuration   *int              `json:"chargeableDuration,omitempty"`
	CallTimeout          int               `json:"callTimeout,omitempty"`
	CallbackURL          string            `json:"callbackUrl,omitempty"`
	CallbackHTTPMethod   string            `json:"callbackHttpMethod,omitempty"`
	CallbackTimeout      int               `json:"callbackTimeout,omitempty"`
	FallbackURL          string            `json:"fallbackUrl,omitempty"`
	BridgeID             string            `json:"bridgeId,omitempty"`
	Bridge               string            `json:"bridge,omitempty"`
	RecordingEnabled     bool              `json:"recordingEnabled"`
	RecordingFileFormat  string            `json:"recordingFileFormat"`
	TranscriptionEnabled bool              `json:"transcriptionEnabled"`
	TransferTo           string            `json:"transferTo,omitempty"`
	TransferCallerID     string            `json:"transferCallerId,omitempty"`
	WhisperAudio         *apiAudio         `json:"whisperAudio,omitempty"`
	Tag                  string            `json:"tag,omitempty"`
	SIPHeaders           map[string]string `json:"sipHeaders,omitempty"`
	Events               string            `json:"events"`
	Recordings           string            `json:"recordings"`
	Transcriptions       string            `json:"transcriptions"`
}

type apiAudio struct {
	FileURL     string `json:"fileUrl,omitempty"`
	Sentence    string `json:"sentence,omitempty"`
	Gender      string `json:"gender,omitempty"`
	Locale      string `json:"locale,omitempty"`
	Voice       string `json:"voice,omitempty"`
	LoopEnabled bool   `json:"loopEnabled,omitempty"`
}

// apiBridge is the v1 Bridge object.
type apiBridge struct {
	ID            string   `json:"id"`
	State         string   `json:"state"`
	BridgeAudio   bool     `json:"bridgeAudio"`
	CallIDs       []string `json:"callIds"`
	Calls         string   `json:"calls"`
	CreatedTime   string   `json:"createdTime"`
	ActivatedTime string   `json:"activatedTime,omitempty"`
	CompletedTime string   `json:"completedTime,omitempty"`
}

func optTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return formatTime(t)
}

func (s *Sim) renderCallLocked(r *http.Request, c *call) apiCall {
	self := s.baseLocked(r) + "/users/" + s.cfg.UserID + "/calls/" + c.ID
	out := apiCall{
		ID:                   c.ID,
		Direction:            c.Direction,
		From:                 c.From,
		To:                   c.To,
		State:                c.State,
		StartTime:            formatTime(c.StartTime),
		ActiveTime:           optTime(c.ActiveTime),
		EndTime:              optTime(c.EndTime),
		CallTimeout:          c.CallTimeout,
		CallbackURL:          c.CallbackURL,
		CallbackHTTPMethod:   c.CallbackHTTPMethod,
		CallbackTimeout:      c.CallbackTimeoutMS,
		FallbackURL:          c.FallbackURL,
		BridgeID:             c.BridgeID,
		RecordingEnabled:     c.RecordingEnabled,
		RecordingFileFormat:  c.RecordingFileFormat,
		TranscriptionEnabled: c.TranscriptionEnabled,
		Tag:                  c.Tag,
		SIPHeaders:           c.SIPHeaders,
		Events:               self + "/events",
		Recordings:           self + "/recordings",
		Transcriptions:       self + "/transcriptions",
	}
	if s.showsTransferFieldsLocked(c) {
		out.TransferTo, out.TransferCallerID = c.TransferTo, c.TransferCallerID
	}
	if out.BridgeID == "" {
		// A call created into a bridge reports it before it joins on answer.
		out.BridgeID = c.PendingBridgeID
	}
	if out.BridgeID != "" {
		out.Bridge = s.baseLocked(r) + "/users/" + s.cfg.UserID + "/bridges/" + out.BridgeID
	}
	if c.Ended() {
		d := c.ChargeableDuration()
		out.ChargeableDuration = &d
	}
	if a := c.WhisperAudio; a != nil {
		out.WhisperAudio = &apiAudio{FileURL: a.FileURL, Sentence: a.Sentence, Gender: a.Gender, Locale: a.Locale, Voice: a.Voice, LoopEnabled: a.LoopEnabled}
	}
	return out
}

// showsTransferFieldsLocked applies Config.ALegTransferFields.
func (s *Sim) showsTransferFieldsLocked(c *call) bool {
	switch s.cfg.ALegTransferFields {
	case ALegTransferFieldsNever:
		return false
	case ALegTransferFieldsWhileTransferring:
		return c.State == StateTransferring
	default:
		return true
	}
}

func (s *Sim) renderBridgeLocked(r *http.Request, b *bridge) apiBridge {
	return apiBridge{
		ID:            b.ID,
		State:         b.State,
		BridgeAudio:   b.BridgeAudio,
		CallIDs:       append([]string{}, b.CallIDs...),
		Calls:         s.baseLocked(r) + "/users/" + s.cfg.UserID + "/bridges/" + b.ID + "/calls",
		CreatedTime:   formatTime(b.CreatedTime),
		ActivatedTime: optTime(b.ActivatedTime),
		CompletedTime: optTime(b.CompletedTime),
	}
}
