// Inbound payment statistics: payments reaching each stage, outcomes (credited, returned by Bacs reason code),
// and per day the number and amount (pence) received and credited. Reads $ce-inboundPayment.
var STAGES = {
  InboundPaymentReceived: 'received',
  InboundPaymentValidated: 'validated',
  InboundPaymentRejected: 'rejected',
  InboundPaymentSanctionsChecked: 'sanctionsChecked',
  InboundPaymentHeld: 'held',
  InboundPaymentReleased: 'released',
  InboundPaymentAccountChecked: 'accountChecked',
  InboundPaymentBalanceUpdated: 'balanceUpdated',
  InboundPaymentFailed: 'failed',
  InboundPaymentReturned: 'returned'
};
var REASON_CODES = {
  referToPayer: '0', ReferToPayer: '0',
  accountTransferred: '3', AccountTransferred: '3',
  noAccount: '5', NoAccount: '5',
  invalidAccountDetails: '6', InvalidAccountDetails: '6',
  accountClosed: 'B', AccountClosed: 'B'
};

function day(e) {
  var at = e.metadata && e.metadata.occurredAt;
  return typeof at === 'string' ? at.substring(0, 10) : 'unknown';
}

function perDay(s, e) {
  var d = day(e);
  if (s.byDay[d] === undefined) { s.byDay[d] = { received: 0, receivedAmount: 0, credited: 0, creditedAmount: 0 }; }
  return s.byDay[d];
}

fromCategory('inboundPayment')
  .when({
    $init: function () { return { byStage: {}, returnedByReason: {}, credited: 0, creditedAmount: 0, byDay: {} }; },
    $any: function (s, e) {
      var stage = STAGES[e.eventType];
      if (stage === undefined) { return; }
      s.byStage[stage] = (s.byStage[stage] || 0) + 1;
      if (e.eventType === 'InboundPaymentReceived') {
        var d = perDay(s, e);
        d.received += 1;
        d.receivedAmount += e.body.amount;
      } else if (e.eventType === 'InboundPaymentBalanceUpdated') {
        var c = perDay(s, e);
        c.credited += 1;
        c.creditedAmount += e.body.amount;
        s.credited += 1;
        s.creditedAmount += e.body.amount;
      } else if (e.eventType === 'InboundPaymentReturned') {
        var code = REASON_CODES[e.body.reason] || '?';
        s.returnedByReason[code] = (s.returnedByReason[code] || 0) + 1;
      }
    }
  })
  .outputState();
