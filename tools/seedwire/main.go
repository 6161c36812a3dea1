// seedwire: the seed's sync-API wire (Mikelle/geth-consensus-tutorial,
// 03-member-nodes), written anew for clnode's tests from the seed's
// documented behaviour: its builder stores payload_data as base64 of
// msgpack.Marshal(*engine.ExecutableData) and requests_data as base64 of
// msgpack.Marshal([][]byte); its syncer decodes them back the same way and
// executes with engine_newPayloadV4(payload, [], parent_hash, requests).
//
//	seedwire encode          clnode records on stdin ({"blocks":[...]}, JSON wire) -> seed records on stdout
//	seedwire decode          seed records on stdin -> what the seed's syncer executes, as Engine API JSON
//	seedwire serve ADDR FILE serve FILE's seed records at /blocks?after=N&limit=M and /blocks/latest
//	                         the seed's way (FILE is read on every request, so a test can append to it)
//	seedwire version         the source stamp it was built from (scripts/deps.sh checks it)
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"

	"github.com/ethereum/go-ethereum/beacon/engine"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/vmihailenco/msgpack/v5"
)

// seedRecord is one record of the seed's sync API (its api.BlockResponse).
type seedRecord struct {
	BlockNumber  uint64 `json:"block_number"`
	BlockHash    string `json:"block_hash"`
	ParentHash   string `json:"parent_hash"`
	PayloadData  string `json:"payload_data"`
	RequestsData string `json:"requests_data"`
	Timestamp    int64  `json:"timestamp"`
}

type seedPage struct {
	Blocks []*seedRecord `json:"blocks"`
}

// clnodeRecord: the fields of clnode's JSON wire that the seed's record needs.
type clnodeRecord struct {
	PayloadData  string `json:"payload_data"`
	RequestsData string `json:"requests_data"`
}

// executed is what the seed's syncer hands to engine_newPayloadV4.
type executed struct {
	BlockNumber           uint64                 `json:"block_number"`
	Payload               *engine.ExecutableData `json:"payload"`
	ExecutionRequests     []hexutil.Bytes        `json:"execution_requests"`
	ParentBeaconBlockRoot common.Hash            `json:"parent_beacon_block_root"`
	BlobVersionedHashes   []common.Hash          `json:"blob_versioned_hashes"`
}

// version is set at build time (scripts/deps.sh): a hash of this folder's sources.
var version = "unknown"

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: seedwire encode|decode|serve ADDR FILE"))
	}
	var err error
	switch os.Args[1] {
	case "version":
		fmt.Println(version)
	case "encode":
		err = encode()
	case "decode":
		err = decode()
	case "serve":
		if len(os.Args) != 4 {
			fail(errors.New("usage: seedwire serve ADDR FILE"))
		}
		err = serve(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "seedwire: %v\n", err)
	os.Exit(1)
}

// encode: clnode's JSON records into the seed's, as the seed's builder
// writes them.
func encode() error {
	var page struct {
		Blocks []clnodeRecord `json:"blocks"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&page); err != nil {
		return fmt.Errorf("read clnode records: %w", err)
	}
	out := seedPage{Blocks: []*seedRecord{}}
	for i, rec := range page.Blocks {
		payloadJSON, err := base64.StdEncoding.DecodeString(rec.PayloadData)
		if err != nil {
			return fmt.Errorf("record %d payload_data: %w", i, err)
		}
		var payload engine.ExecutableData
		if err := json.Unmarshal(payloadJSON, &payload); err != nil {
			return fmt.Errorf("record %d payload: %w", i, err)
		}
		requestsJSON, err := base64.StdEncoding.DecodeString(rec.RequestsData)
		if err != nil {
			return fmt.Errorf("record %d requests_data: %w", i, err)
		}
		var hexRequests []hexutil.Bytes
		if err := json.Unmarshal(requestsJSON, &hexRequests); err != nil {
			return fmt.Errorf("record %d requests: %w", i, err)
		}
		// geth's getPayload answers a list, never null: a non-nil slice.
		requests := make([][]byte, 0, len(hexRequests))
		for _, r := range hexRequests {
			requests = append(requests, r)
		}
		payloadData, err := msgpack.Marshal(&payload)
		if err != nil {
			return fmt.Errorf("record %d: marshal payload: %w", i, err)
		}
		requestsData, err := msgpack.Marshal(requests)
		if err != nil {
			return fmt.Errorf("record %d: marshal requests: %w", i, err)
		}
		out.Blocks = append(out.Blocks, &seedRecord{
			BlockNumber:  payload.Number,
			BlockHash:    payload.BlockHash.Hex(),
			ParentHash:   payload.ParentHash.Hex(),
			PayloadData:  base64.StdEncoding.EncodeToString(payloadData),
			RequestsData: base64.StdEncoding.EncodeToString(requestsData),
			Timestamp:    int64(payload.Timestamp),
		})
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// decode: seed records into what the seed's syncer executes.
func decode() error {
	var page seedPage
	if err := json.NewDecoder(os.Stdin).Decode(&page); err != nil {
		return fmt.Errorf("read seed records: %w", err)
	}
	out := struct {
		Blocks []executed `json:"blocks"`
	}{Blocks: []executed{}}
	for _, rec := range page.Blocks {
		payloadBytes, err := base64.StdEncoding.DecodeString(rec.PayloadData)
		if err != nil {
			return fmt.Errorf("block %d: decode payload: %w", rec.BlockNumber, err)
		}
		var payload engine.ExecutableData
		if err := msgpack.Unmarshal(payloadBytes, &payload); err != nil {
			return fmt.Errorf("block %d: unmarshal payload: %w", rec.BlockNumber, err)
		}
		var requests [][]byte
		if rec.RequestsData != "" {
			requestsBytes, err := base64.StdEncoding.DecodeString(rec.RequestsData)
			if err != nil {
				return fmt.Errorf("block %d: decode requests: %w", rec.BlockNumber, err)
			}
			if err := msgpack.Unmarshal(requestsBytes, &requests); err != nil {
				return fmt.Errorf("block %d: unmarshal requests: %w", rec.BlockNumber, err)
			}
		}
		hexRequests := make([]hexutil.Bytes, 0, len(requests))
		for _, r := range requests {
			hexRequests = append(hexRequests, r)
		}
		out.Blocks = append(out.Blocks, executed{
			BlockNumber:           rec.BlockNumber,
			Payload:               &payload,
			ExecutionRequests:     hexRequests,
			ParentBeaconBlockRoot: common.HexToHash(rec.ParentHash),
			BlobVersionedHashes:   []common.Hash{},
		})
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// serve: the seed's sync API over the records in file.
func serve(addr, file string) error {
	load := func() ([]*seedRecord, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var page seedPage
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, err
		}
		sort.Slice(page.Blocks, func(i, j int) bool { return page.Blocks[i].BlockNumber < page.Blocks[j].BlockNumber })
		return page.Blocks, nil
	}
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blocks/latest", func(w http.ResponseWriter, r *http.Request) {
		blocks, err := load()
		if err != nil || len(blocks) == 0 {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		reply(w, blocks[len(blocks)-1])
	})
	mux.HandleFunc("/blocks", func(w http.ResponseWriter, r *http.Request) {
		after, err := strconv.ParseUint(valueOr(r.URL.Query().Get("after"), "0"), 10, 64)
		if err != nil {
			http.Error(w, "invalid after parameter", http.StatusBadRequest)
			return
		}
		limit, err := strconv.Atoi(valueOr(r.URL.Query().Get("limit"), "100"))
		if err != nil || limit <= 0 {
			limit = 100
		}
		if limit > 1000 {
			limit = 1000
		}
		blocks, err := load()
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		page := seedPage{Blocks: []*seedRecord{}}
		for _, b := range blocks {
			if b.BlockNumber > after && len(page.Blocks) < limit {
				page.Blocks = append(page.Blocks, b)
			}
		}
		reply(w, page)
	})
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	return http.Serve(listener, mux)
}

func valueOr(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
