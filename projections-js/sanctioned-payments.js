// Sanctioned payments: the payments currently held by sanctions screening, and how many were released or
// rejected by an operator. Reads $ce-screening (every screening-{paymentId} stream).
fromCategory('screening')
  .when({
    $init: function () { return { held: {}, heldCount: 0, released: 0, rejected: 0, clear: 0 }; },
    PaymentScreened: function (s, e) {
      if (e.body.result.outcome === 'hit') {
        s.held[e.body.paymentId] = { name: e.body.screenedName, matches: e.body.result.matches.length };
        s.heldCount += 1;
      } else {
        s.clear += 1;
      }
    },
    HeldPaymentReleased: function (s, e) {
      if (s.held[e.body.paymentId] !== undefined) {
        delete s.held[e.body.paymentId];
        s.heldCount -= 1;
      }
      s.released += 1;
    },
    HeldPaymentRejected: function (s, e) {
      if (s.held[e.body.paymentId] !== undefined) {
        delete s.held[e.body.paymentId];
        s.heldCount -= 1;
      }
      s.rejected += 1;
    }
  })
  .outputState();
