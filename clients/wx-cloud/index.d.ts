// Types of cloudfn-wx-cloud: the `wx.cloud` surface a mini-program uses, served by cloudfn.

/** The wx-style callbacks every API also takes (besides returning a promise). */
export interface Callbacks<T> {
  success?: (res: T) => void;
  fail?: (err: CloudError) => void;
  complete?: (res: T | CloudError) => void;
}

/** A failed API: `errCode` is the host's (or the env's `cloudbase_auth`'s) code. */
export interface CloudError extends Error {
  errCode: number;
  errMsg: string;
}

export interface InitOptions {
  /** The env `callFunction` uses unless a call names another. */
  env?: string;
  /** The cloudfn host, e.g. `https://fn.example.com`. */
  baseUrl: string;
  /** The mini-program's appid (default: `wx.getAccountInfoSync().miniProgram.appId`). */
  appid?: string;
  /** Put this module in `wx.cloud` (default true). */
  install?: boolean;
}

export interface CallFunctionOptions<D = unknown> extends Callbacks<CallFunctionResult> {
  /** The function. */
  name: string;
  /** Its event. */
  data?: D;
  /** Another env than the one given to `init`. */
  config?: { env?: string };
}

export interface CallFunctionResult<R = any> {
  /** What the function returned. */
  result: R;
  requestID: string;
  /** `cloud.callFunction:ok`. */
  errMsg: string;
}

export interface CallContainerOptions<D = unknown> extends Callbacks<CallContainerResult> {
  /** The path (and query) the HTTP function receives. */
  path: string;
  /** Default `GET`. */
  method?: 'OPTIONS' | 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'TRACE' | 'CONNECT';
  /** Must include `X-WX-SERVICE`: the HTTP function. */
  header: Record<string, string>;
  /** The body (JSON unless a content-type says otherwise). */
  data?: D;
  /** Another env than the one given to `init`. */
  config?: { env?: string };
  /** `json` (default) parses the answer. */
  dataType?: string;
  responseType?: 'text' | 'arraybuffer';
  /** Milliseconds, at most 15000. */
  timeout?: number;
}

export interface CallContainerResult<R = any> {
  /** The function's body. */
  data: R;
  statusCode: number;
  header: Record<string, string>;
  /** The call's request id. */
  callID: string;
  /** `cloud.callContainer:ok`. */
  errMsg: string;
}

export interface CloudOptions {
  /** The app that owns the shared env. */
  resourceAppid: string;
  /** The shared env. */
  resourceEnv: string;
  /** Default: the one given to `init`. */
  baseUrl?: string;
  /** Default: the one given to `init`. */
  appid?: string;
}

/** Another app's shared env; `init()` runs its owner's `cloudbase_auth` for this user. */
export declare class Cloud {
  constructor(options: CloudOptions);
  init(): Promise<{ errMsg: string }>;
  init(options: Callbacks<{ errMsg: string }>): void;
  callFunction<R = any, D = unknown>(options: CallFunctionOptions<D>): Promise<CallFunctionResult<R>>;
  callContainer<R = any, D = unknown>(options: CallContainerOptions<D>): Promise<CallContainerResult<R>>;
}

export declare function init(options: InitOptions): typeof import('./index');
export declare function callFunction<R = any, D = unknown>(
  options: CallFunctionOptions<D>,
): Promise<CallFunctionResult<R>>;
/** An HTTP function through the callContainer gateway. */
export declare function callContainer<R = any, D = unknown>(
  options: CallContainerOptions<D>,
): Promise<CallContainerResult<R>>;
/** Logs in now (otherwise the first call does). */
export declare function login(): Promise<{ openid: string }>;
/** Forgets the kept session; the next call logs in again. */
export declare function logout(): void;
