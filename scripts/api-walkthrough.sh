#!/usr/bin/env bash
# The docs/api.md walk-through, end to end: customer, agent, recommendation, approval, execution, rollback,
# a refused transition, and the event log. Usage: OPS=<operator key> scripts/api-walkthrough.sh [base URL]
set -euo pipefail
BASE=${1:-http://127.0.0.1:8000}
API=$BASE/api/v1
: "${OPS:?set OPS to the operator key printed by optiinfra serve}"
field() { python3 -c "import json, sys; d = json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
call() { # METHOD PATH KEY [JSON]
  local method=$1 path=$2 key=$3 body=${4:-}
  if [ -n "$body" ]; then
    curl -sS -X "$method" "$API$path" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body"
  else
    curl -sS -X "$method" "$API$path" -H "Authorization: Bearer $key"
  fi
}
suffix=$(python3 -c 'import secrets; print(secrets.token_hex(4))')

echo "== create a customer"
customer=$(call POST /customers "$OPS" "{\"name\": \"Example Corp $suffix\", \"email\": \"mlops-$suffix@example.com\", \"plan\": \"startup\"}")
echo "$customer"
CUSTOMER_ID=$(echo "$customer" | field "['id']"); CUSTOMER_KEY=$(echo "$customer" | field "['api_key']")

echo "== register a cost agent and heartbeat"
agent=$(call POST /agents "$OPS" "{\"type\": \"cost\", \"name\": \"cost-agent-$suffix\", \"version\": \"1.0.0\", \"capabilities\": [\"spot_migration\"]}")
echo "$agent"
AGENT_ID=$(echo "$agent" | field "['id']"); AGENT_KEY=$(echo "$agent" | field "['api_key']")
call POST "/agents/$AGENT_ID/heartbeat" "$AGENT_KEY" '{"status": "healthy"}'; echo

echo "== the agent proposes; the customer approves"
rec=$(call POST /recommendations "$AGENT_KEY" "{\"customer_id\": \"$CUSTOMER_ID\", \"type\": \"spot_migration\", \"title\": \"Move 4 nodes to spot\", \"estimated_savings\": \"3412.80\", \"confidence_score\": 0.87, \"priority\": \"high\"}")
echo "$rec"
REC_ID=$(echo "$rec" | field "['id']")
decision=$(call POST "/recommendations/$REC_ID/decision" "$CUSTOMER_KEY" '{"decision": "approve", "comment": "Go ahead"}')
echo "$decision"
OPT_ID=$(echo "$decision" | field "['optimization']['id']")

echo "== the agent executes; the customer rolls back"
call POST "/optimizations/$OPT_ID/start" "$AGENT_KEY"; echo
call POST "/optimizations/$OPT_ID/progress" "$AGENT_KEY" '{"progress": 50}'; echo
call POST "/optimizations/$OPT_ID/complete" "$AGENT_KEY" '{"actual_savings": "3190.00", "result": {"phases": 3}}'; echo
call POST "/optimizations/$OPT_ID/rollback" "$CUSTOMER_KEY" '{"reason": "answer quality dropped"}'; echo

echo "== a refused transition"
call POST "/recommendations/$REC_ID/decision" "$CUSTOMER_KEY" '{"decision": "approve"}'; echo

echo "== the event log, oldest first"
call GET "/events?limit=20" "$CUSTOMER_KEY" | python3 -c '
import json, sys
for event in reversed(json.load(sys.stdin)["items"]):
    print(event["created_at"], event["event_type"], event["data"].get("before", ""), "->", event["data"].get("after", ""))'
