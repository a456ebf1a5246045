// An independent DICOM client for the workflow tests, on dcmjs-dimse (npm): MPPS N-CREATE and
// N-SET (PS3.4 F.7), Storage Commitment Push Model N-ACTION with the N-EVENT-REPORT taken on
// the same association or on a listener of its own (PS3.4 J.3). It prints one JSON object on
// stdout; DIMSE statuses are in it, a network failure exits 2.
//
//   node dimse_workflow_client.cjs mpps-create HOST PORT CALLED CALLING UID DATASET.json
//   node dimse_workflow_client.cjs mpps-set    HOST PORT CALLED CALLING UID DATASET.json
//   node dimse_workflow_client.cjs commit      HOST PORT CALLED CALLING TRANSACTION REFS.json [LISTEN_PORT]
//
// DATASET.json is a dataset as dcmjs names it ({"PatientID": "...", "ScheduledStepAttributesSequence": [...]});
// REFS.json is [[SOP Class UID, SOP Instance UID], ...]. The package is loaded from DCMJS_DIMSE_DIR.
'use strict';

const path = require('path');
const fs = require('fs');
const net = require('net');

// dcmjs-dimse leaves Nagle's algorithm on: each small DIMSE message would wait ~40 ms for an ACK
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connectNoDelay(...args) {
  this.setNoDelay(true);
  return connect.apply(this, args);
};

const dimse = require(path.join(process.env.DCMJS_DIMSE_DIR || '', 'node_modules', 'dcmjs-dimse'));
const { Client, Dataset, Server, Scp, log } = dimse;
log.setLevel('error'); // stdout carries the JSON result only
const { NCreateRequest, NSetRequest, NActionRequest } = dimse.requests;
const { NEventReportResponse } = dimse.responses;
const { Status, PresentationContextResult, TransferSyntax } = dimse.constants;

const MPPS = '1.2.840.10008.3.1.2.3.3';
const COMMITMENT = '1.2.840.10008.1.20.1';
const COMMITMENT_INSTANCE = '1.2.840.10008.1.20.1.1';

function done(result, code = 0) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(code);
}

function report(request) {
  const ds = request.getDataset();
  const info = ds ? ds.getElements() : {};
  return {
    event_type: request.getEventTypeId(),
    transaction_uid: info.TransactionUID,
    committed: (info.ReferencedSOPSequence || []).map((i) => [i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID]),
    failed: (info.FailedSOPSequence || []).map((i) => [i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, i.FailureReason]),
  };
}

function answer(request, callback) {
  const response = NEventReportResponse.fromRequest(request);
  response.setStatus(Status.Success);
  callback(response);
}

function normalized(kind, host, port, called, calling, uid, file) {
  const dataset = new Dataset(JSON.parse(fs.readFileSync(file, 'utf8')));
  const request = kind === 'mpps-create' ? new NCreateRequest(MPPS, uid) : new NSetRequest(MPPS, uid);
  request.setDataset(dataset);
  const client = new Client();
  let result = null;
  request.on('response', (response) => {
    result = { status: response.getStatus(), error_comment: response.getErrorComment() || '' };
  });
  client.addRequest(request);
  client.on('networkError', (e) => done({ error: String(e) }, 2));
  client.on('closed', () => done(result || { error: 'no response' }, result ? 0 : 2));
  client.send(host, Number(port), calling, called);
}

function listen(port, onReport) {
  class CommitmentScp extends Scp {
    associationRequested(association) {
      association.getPresentationContexts().forEach((c) => {
        const context = association.getPresentationContext(c.id);
        if (context.getAbstractSyntaxUid() === COMMITMENT) {
          const syntaxes = context.getTransferSyntaxUids();
          const chosen = syntaxes.find((s) => s === TransferSyntax.ExplicitVRLittleEndian) ||
            syntaxes.find((s) => s === TransferSyntax.ImplicitVRLittleEndian);
          if (chosen) {
            context.setResult(PresentationContextResult.Accept, chosen);
          } else {
            context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
          }
        } else {
          context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
        }
      });
      this.sendAssociationAccept();
    }

    nEventReportRequest(request, callback) {
      answer(request, callback);
      onReport(request);
    }

    associationReleaseRequested() {
      this.sendAssociationReleaseResponse();
    }
  }
  const server = new Server(CommitmentScp);
  server.on('networkError', (e) => done({ error: String(e) }, 2));
  server.listen(Number(port));
  return server;
}

function commit(host, port, called, calling, transaction, file, listenPort) {
  // Without LISTEN_PORT the report is taken on the request's association, which stays open a
  // moment for it. With LISTEN_PORT the client aborts as soon as the N-ACTION is answered, as a
  // modality that takes reports only on associations of their own, and waits on its listener.
  const refs = JSON.parse(fs.readFileSync(file, 'utf8'));
  const request = new NActionRequest(COMMITMENT, COMMITMENT_INSTANCE, 1);
  request.setDataset(
    new Dataset({
      TransactionUID: transaction,
      ReferencedSOPSequence: refs.map(([cls, uid]) => ({ ReferencedSOPClassUID: cls, ReferencedSOPInstanceUID: uid })),
    })
  );
  const result = { action_status: null, event_type: null, association: null };
  const client = new Client();
  if (listenPort) {
    listen(listenPort, (r) => {
      Object.assign(result, report(r), { association: 'separate' });
      setTimeout(() => done(result), 300); // let the N-EVENT-REPORT-RSP go out
    });
  }
  request.on('response', (response) => {
    result.action_status = response.getStatus();
    result.error_comment = response.getErrorComment() || '';
    if (listenPort) {
      client.abort();
    }
  });
  client.on('nEventReportRequest', (r, callback) => {
    if (listenPort) {
      return; // not taken here: the association is being aborted
    }
    answer(r, callback);
    Object.assign(result, report(r), { association: 'same' });
  });
  client.addRequest(request);
  client.on('networkError', (e) => {
    if (!listenPort) {
      done({ error: String(e) }, 2);
    }
  });
  client.on('closed', () => {
    if (!listenPort) {
      done(result);
    }
  });
  client.send(host, Number(port), calling, called, { associationLingerTimeout: listenPort ? 0 : 1500 });
  setTimeout(() => done(result), 30000);
}

const [command, ...args] = process.argv.slice(2);
if (command === 'mpps-create' || command === 'mpps-set') {
  normalized(command, ...args);
} else if (command === 'commit') {
  commit(...args);
} else {
  done({ error: `unknown command ${command}` }, 2);
}
