package cliout

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// ClusterProblems is why the cluster is not healthy: no leader, or a voter
// that is unhealthy or cannot be asked (`tier0 cluster status` exits 1).
func ClusterProblems(st *tier0v1.ClusterStatusResponse) []string {
	var out []string
	if st.GetLeaderId() == "" {
		out = append(out, "no leader (a majority of the voters must be up and reach each other)")
	}
	for _, m := range st.GetMemberStatus() {
		if m.GetSuffrage() != "Voter" {
			continue
		}
		switch {
		case m.GetError() != "":
			out = append(out, fmt.Sprintf("voter %s: %s", m.GetNodeId(), m.GetError()))
		case !m.GetHealthy():
			out = append(out, fmt.Sprintf("voter %s not ready: %s", m.GetNodeId(), strings.Join(m.GetNotReady(), "; ")))
		}
	}
	return out
}

// ClusterStatus writes st as a table (one row per member, as each
// member sees itself) or JSON, then returns an error naming the problems.
func ClusterStatus(w io.Writer, st *tier0v1.ClusterStatusResponse, format string) error {
	problems := ClusterProblems(st)
	if format == JSON {
		members := make([]any, 0, len(st.GetMemberStatus()))
		for _, m := range st.GetMemberStatus() {
			obj, err := protoMap(m)
			if err != nil {
				return err
			}
			obj["leader"] = m.GetNodeId() == st.GetLeaderId()
			members = append(members, obj)
		}
		if problems == nil {
			problems = []string{}
		}
		b, err := json.MarshalIndent(map[string]any{
			"answered_by": st.GetNodeId(), "leader_id": st.GetLeaderId(), "leader_address": st.GetLeaderAddress(),
			"term": st.GetTerm(), "journal_seq": st.GetJournalSeq(), "exported_seq": st.GetExportedSeq(),
			"export_lag": st.GetExportLag(), "healthy": len(problems) == 0, "problems": problems, "members": members,
		}, "", "  ")
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(w, string(b)); err != nil {
			return err
		}
	} else {
		leader := st.GetLeaderId()
		if leader == "" {
			leader = "NONE"
		}
		fmt.Fprintf(w, "leader %s, term %d (answered by %s); journal seq %d, exported %d, export lag %d\n\n",
			leader, st.GetTerm(), st.GetNodeId(), st.GetJournalSeq(), st.GetExportedSeq(), st.GetExportLag())
		tw := tabs(w)
		fmt.Fprintln(tw, "NODE\tAPI\tRAFT\tSUFFRAGE\tSTATE\tLEADER\tLAST CONTACT\tAPPLIED\tCOMMIT\tLAG\tHEALTHY\tVERSION")
		for _, m := range st.GetMemberStatus() {
			l, healthy, contact := "", "yes", "-"
			if m.GetNodeId() == st.GetLeaderId() {
				l = "*"
			}
			switch {
			case m.GetError() != "":
				healthy = "unreachable"
			case !m.GetHealthy():
				healthy = "no"
			}
			if ms := m.GetLastContactMs(); ms >= 0 && m.GetError() == "" {
				contact = (time.Duration(ms) * time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", m.GetNodeId(), orDash(m.GetApiAddress()), m.GetRaftAddress(),
				m.GetSuffrage(), orDash(m.GetState()), l, contact, m.GetAppliedIndex(), m.GetCommitIndex(), m.GetLag(), healthy, shortVersion(m.GetVersion()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(w, "PROBLEM:", p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cluster status: %s", strings.Join(problems, "; "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortVersion keeps "v1.2.3 (rev 0123abcd" of a version line and closes it.
func shortVersion(v string) string {
	if v == "" {
		return "-"
	}
	if i := strings.Index(v, ","); i > 0 {
		return v[:i] + ")"
	}
	return v
}

// protoMap is m as a JSON object: every field (zeros too), snake_case
// names, 64-bit integers as numbers.
func protoMap(m proto.Message) (map[string]any, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		s, ok := obj[string(f.Name())].(string)
		if !ok || f.Kind() == protoreflect.StringKind {
			continue
		}
		if x, err := strconv.ParseInt(s, 10, 64); err == nil {
			obj[string(f.Name())] = x
		} else if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			obj[string(f.Name())] = u
		}
	}
	return obj, nil
}
