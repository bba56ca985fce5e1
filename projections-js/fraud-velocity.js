// Fraud velocity: an account receiving more than MAX_PAYMENTS inbound payments within WINDOW_MINUTES raises a
// FraudVelocityAlertRaised event in the fraudAlerts stream (once per burst). It works from the beginning of
// time: created today, it processes all history. One partition per account stream (foreachStream).
var MAX_PAYMENTS = 3;
var WINDOW_MINUTES = 10;

options({ resultStreamName: 'fraud-velocity-result' });

fromCategory('account')
  .foreachStream()
  .when({
    $init: function () { return { recent: [], alerts: 0, alerting: false }; },
    FundsCredited: function (s, e) {
      var at = Date.parse(e.metadata && e.metadata.occurredAt);
      if (isNaN(at)) { return; }
      var since = at - WINDOW_MINUTES * 60 * 1000;
      s.recent = s.recent.filter(function (t) { return t > since; });
      s.recent.push(at);
      // Only the newest MAX_PAYMENTS + 1 matter (are there more than MAX_PAYMENTS in the window?): keeping every
      // payment of the window made each event and each checkpoint cost as much as the account's recent traffic
      // (1,500 entries per account at 2,500 payments/s over 1,000 accounts).
      if (s.recent.length > MAX_PAYMENTS + 1) {
        s.recent = s.recent.slice(s.recent.length - (MAX_PAYMENTS + 1));
      }
      if (s.recent.length > MAX_PAYMENTS) {
        if (!s.alerting) {
          s.alerting = true;
          s.alerts += 1;
          emit('fraudAlerts', 'FraudVelocityAlertRaised', {
            account: e.streamId.substring('account-'.length),
            payments: s.recent.length,
            windowMinutes: WINDOW_MINUTES,
            at: new Date(at).toISOString()
          });
        }
      } else {
        s.alerting = false;
      }
    }
  });
